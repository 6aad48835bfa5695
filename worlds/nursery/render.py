"""Pygame frames of one nursery world: terrain (water blue, held-out pits dark brown), food, predators,
mothers and babies (in their marker colours), plus a status strip with each mother's energy and her
baby's hunger cue. pygame is imported only when a renderer is made (`worlds.render`)."""

from __future__ import annotations

import numpy as np

from worlds.nursery.core import FLOOR, HAZARD, PIT, WALL, NurseryCore, NurseryState
from worlds.render import PygameRenderer

CELL = 36
STRIP = 26  # status strip height per mother
COLOURS = {FLOOR: (222, 214, 190), WALL: (70, 70, 78), HAZARD: (55, 120, 200), PIT: (95, 55, 20)}
FOOD, PREDATOR, RESTING = (70, 160, 60), (200, 30, 30), (140, 90, 90)


class Renderer(PygameRenderer):
    def __init__(self, core: NurseryCore, window: bool = False, fps: int = 8):
        self.core = core
        size = (core.config.width * CELL, core.config.height * CELL + STRIP * core.A)
        super().__init__(size, window, fps, "Caring — nursery")

    def draw(self, state: NurseryState, world: int = 0) -> np.ndarray:
        """Draw world `world` of a batched state; returns the frame as (H, W, 3) uint8."""
        pg, core, cfg, surf = self.pg, self.core, self.core.config, self.canvas
        s = state.index(slice(world, world + 1))  # every field (..., 1), batch-last

        def rows(x):  # (k, E, 1) -> E lists of k values
            return x[..., 0].T.tolist()

        def slots(x):  # (E, 1) -> E values
            return x[:, 0].tolist()

        cells = s.cells[..., 0].cpu().numpy()
        food = s.food_timer[..., 0].cpu().numpy()
        surf.fill((30, 30, 30))
        for y in range(cfg.height):
            for x in range(cfg.width):
                rect = pg.Rect(x * CELL, y * CELL, CELL - 1, CELL - 1)
                pg.draw.rect(surf, COLOURS[int(cells[y, x])], rect)
                if food[y, x] == 0:
                    pg.draw.circle(surf, FOOD, rect.center, CELL // 5)
                elif food[y, x] > 0:
                    pg.draw.circle(surf, FOOD, rect.center, 3)
        for (y, x), rest in zip(rows(s.predator_pos), slots(s.predator_rest), strict=True):
            cx, cy = x * CELL + CELL // 2, y * CELL + CELL // 2
            h = CELL // 2 - 4
            pg.draw.polygon(
                surf, RESTING if rest else PREDATOR, [(cx, cy - h), (cx - h, cy + h), (cx + h, cy + h)]
            )
        alive, pos, kin = slots(s.mother_alive), rows(s.mother_pos), rows(s.kin_marker)
        for i in range(core.A):
            if alive[i]:
                centre = (pos[i][1] * CELL + CELL // 2, pos[i][0] * CELL + CELL // 2)
                pg.draw.circle(surf, kin[i], centre, CELL // 2 - 3)
                pg.draw.circle(surf, (255, 255, 255), centre, CELL // 2 - 3, 2)
        baby_alive, baby_pos, marker = slots(s.baby_alive), rows(s.baby_pos), rows(s.baby_marker)
        hunger, carried, energy = slots(s.hunger), slots(s.carried_by), slots(s.energy)
        given_birth = slots(s.has_given_birth)
        for i in range(core.A):
            if not baby_alive[i]:
                continue
            centre = (baby_pos[i][1] * CELL + CELL // 2, baby_pos[i][0] * CELL + CELL // 2)
            radius = CELL // 6 if carried[i] >= 0 else CELL // 4
            pg.draw.circle(surf, (20, 20, 20), centre, radius + 2)
            pg.draw.circle(surf, marker[i], centre, radius)
            if hunger[i] >= cfg.cry_threshold:  # crying: a yellow ring
                pg.draw.circle(surf, (255, 230, 0), centre, radius + 3, 2)
        top = cfg.height * CELL
        for i in range(core.A):
            y = top + i * STRIP + 4
            pg.draw.circle(surf, kin[i], (10, y + 8), 7)
            fill = energy[i] / cfg.energy_max
            pg.draw.rect(surf, (60, 60, 60), (24, y + 2, 100, 12))
            pg.draw.rect(surf, (90, 200, 90) if alive[i] else (120, 40, 40), (24, y + 2, int(100 * fill), 12))
            if baby_alive[i]:
                cue = "crying" if hunger[i] >= cfg.cry_threshold else "content"
                text = f"baby {cue}" + (", carried" if carried[i] >= 0 else "")
            else:
                text = "baby lost" if given_birth[i] else "no baby"
            surf.blit(
                self.font.render(f"{'' if alive[i] else 'dead  '}{text}", True, (230, 230, 230)), (132, y + 2)
            )
        surf.blit(self.font.render(f"t={int(s.t[0])}", True, (230, 230, 230)), (self.size[0] - 48, top + 6))
        return self.present()
