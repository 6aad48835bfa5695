"""Pygame frames of one lava world: floor, walls, lava, quicksand, the goal and the walker, plus a status
strip with the step, the tile under the walker and whether quicksand holds it; for a viewer also the
legend, the walker's facts and where her view lies. pygame is imported only when a renderer is made
(`worlds.render`)."""

from __future__ import annotations

from typing import Any

from worlds.lava.core import (
    CHANNELS,
    FLOOR,
    GOAL,
    LAVA,
    QUICKSAND,
    SCALARS,
    TILE_NAMES,
    WALL,
    LavaCore,
    LavaState,
)
from worlds.render import CELL, AgentFacts, Fact, Glyph, PygameRenderer

STRIP = 26  # status strip height
COLOURS = {
    FLOOR: (222, 214, 190),
    WALL: (70, 70, 78),
    LAVA: (225, 80, 20),
    QUICKSAND: (194, 160, 100),
    GOAL: (70, 170, 70),
}
LAVA_GLOW, SAND_DOTS, WALKER = (255, 170, 40), (130, 100, 55), (40, 90, 200)


def _tile(pg: Any, surf: Any, rect: Any, tile: int) -> None:
    pg.draw.rect(surf, COLOURS[tile], rect)
    if tile == LAVA:
        pg.draw.circle(surf, LAVA_GLOW, rect.center, CELL // 5)
    elif tile == QUICKSAND:
        for dx, dy in ((-8, -8), (8, -4), (-4, 8), (9, 9)):
            pg.draw.circle(surf, SAND_DOTS, (rect.centerx + dx, rect.centery + dy), 2)


def _walker(pg: Any, surf: Any, rect: Any) -> None:
    pg.draw.circle(surf, WALKER, rect.center, CELL // 2 - 4)
    pg.draw.circle(surf, (255, 255, 255), rect.center, CELL // 2 - 4, 2)


class Renderer(PygameRenderer):
    view_channels = len(CHANNELS)
    scalar_names = SCALARS
    max_facts = 2

    def __init__(self, core: LavaCore, window: bool = False, fps: int = 8):
        super().__init__(core, STRIP, window, fps, "Caring — lava")

    def paint(self, state: LavaState, world: int = 0) -> None:
        pg, core, surf = self.pg, self.core, self.canvas
        cells = state.cells[..., world].cpu().numpy()  # (H, W)
        row, col = state.pos[:, world].tolist()
        held, t = int(state.held[world]), int(state.t[world])
        surf.fill((30, 30, 30))
        for y in range(core.H):
            for x in range(core.W):
                _tile(pg, surf, self.cell(y, x), int(cells[y, x]))
        _walker(pg, surf, self.cell(row, col))
        status = f"t={t}  on {TILE_NAMES[int(cells[row, col])]}" + (f"  held ({held})" if held else "")
        surf.blit(self.font.render(status, True, (230, 230, 230)), (8, core.H * CELL + 6))

    def legend(self) -> list[tuple[Glyph, str]]:
        pg = self.pg
        return [
            (lambda s, r: _walker(pg, s, r), "walker"),
            (lambda s, r: _tile(pg, s, r, GOAL), "goal"),
            (lambda s, r: _tile(pg, s, r, LAVA), "lava (harm)"),
            (lambda s, r: _tile(pg, s, r, QUICKSAND), "quicksand (held-out)"),
            (lambda s, r: _tile(pg, s, r, WALL), "wall"),
            (lambda s, r: _tile(pg, s, r, FLOOR), "floor"),
        ]

    def agents(self, state: LavaState, world: int = 0) -> list[AgentFacts]:
        row, col = state.pos[:, world].tolist()
        goal = state.goal[:, world].tolist()
        tile = TILE_NAMES[int(state.cells[row, col, world])]
        held = int(state.held[world])
        facts = (
            Fact("on", tile + (f", held {held} more steps" if held else "")),
            Fact(
                "goal",
                "reached"
                if bool(state.at_goal[world])
                else f"{abs(goal[0] - row) + abs(goal[1] - col)} steps away",
            ),
        )
        return [AgentFacts("walker", WALKER, True, facts)]

    def view_origin(self, state: LavaState, world: int, agent: int) -> tuple[int, int] | None:
        r = self.core.config.view_radius
        row, col = state.pos[:, world].tolist()
        return row - r, col - r
