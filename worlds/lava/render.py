"""Pygame frames of one lava world: floor, walls, lava, quicksand, the goal and the walker, plus a status
strip with the step, the tile under the walker and whether quicksand holds it. pygame is imported only
when a renderer is made (`worlds.render`)."""

from __future__ import annotations

import numpy as np

from worlds.lava.core import FLOOR, GOAL, LAVA, QUICKSAND, TILE_NAMES, WALL, LavaCore, LavaState
from worlds.render import PygameRenderer

CELL = 36
STRIP = 26  # status strip height
COLOURS = {
    FLOOR: (222, 214, 190),
    WALL: (70, 70, 78),
    LAVA: (225, 80, 20),
    QUICKSAND: (194, 160, 100),
    GOAL: (70, 170, 70),
}
LAVA_GLOW, SAND_DOTS, WALKER = (255, 170, 40), (130, 100, 55), (40, 90, 200)


class Renderer(PygameRenderer):
    def __init__(self, core: LavaCore, window: bool = False, fps: int = 8):
        self.core = core
        super().__init__((core.W * CELL, core.H * CELL + STRIP), window, fps, "Caring — lava")

    def draw(self, state: LavaState, world: int = 0) -> np.ndarray:
        """Draw world `world` of a batched state; returns the frame as (H, W, 3) uint8."""
        pg, core, surf = self.pg, self.core, self.canvas
        cells = state.cells[..., world].cpu().numpy()  # (H, W)
        row, col = state.pos[:, world].tolist()
        held, t = int(state.held[world]), int(state.t[world])
        surf.fill((30, 30, 30))
        for y in range(core.H):
            for x in range(core.W):
                tile = int(cells[y, x])
                rect = pg.Rect(x * CELL, y * CELL, CELL - 1, CELL - 1)
                pg.draw.rect(surf, COLOURS[tile], rect)
                if tile == LAVA:
                    pg.draw.circle(surf, LAVA_GLOW, rect.center, CELL // 5)
                elif tile == QUICKSAND:
                    for dx, dy in ((-8, -8), (8, -4), (-4, 8), (9, 9)):
                        pg.draw.circle(surf, SAND_DOTS, (rect.centerx + dx, rect.centery + dy), 2)
        centre = (col * CELL + CELL // 2, row * CELL + CELL // 2)
        pg.draw.circle(surf, WALKER, centre, CELL // 2 - 4)
        pg.draw.circle(surf, (255, 255, 255), centre, CELL // 2 - 4, 2)
        status = f"t={t}  on {TILE_NAMES[int(cells[row, col])]}" + (f"  held ({held})" if held else "")
        surf.blit(self.font.render(status, True, (230, 230, 230)), (8, core.H * CELL + 6))
        return self.present()
