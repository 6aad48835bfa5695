"""Pygame frames of one nursery world: terrain (water blue, held-out pits dark brown), food, predators,
mothers and babies (in their marker colours), plus a status strip with each mother's energy and her
baby's hunger cue. In a world of several generations a mother's ring shows her generation (white,
gold, cyan, magenta for generations 1-4) and the strip names it. A viewer also gets the legend, each
mother's facts (her baby's hunger and health included, which she cannot see) and where her view lies.
pygame is imported only when a renderer is made (`worlds.render`)."""

from __future__ import annotations

from typing import Any

from worlds.nursery.core import (
    FLOOR,
    HAZARD,
    PIT,
    VIEW_CHANNELS,
    WALL,
    NurseryCore,
    NurseryState,
)
from worlds.render import CELL, AgentFacts, Fact, Glyph, PygameRenderer

STRIP = 26  # status strip height per mother
COLOURS = {FLOOR: (222, 214, 190), WALL: (70, 70, 78), HAZARD: (55, 120, 200), PIT: (95, 55, 20)}
FOOD, PREDATOR, RESTING, CRYING = (70, 160, 60), (200, 30, 30), (140, 90, 90), (255, 230, 0)
ENERGY, HEALTH = (90, 200, 90), (220, 80, 120)  # the viewer's bars
LEGEND_MOTHER, LEGEND_BABY = (230, 60, 60), (60, 110, 235)  # example kin colours for the legend
GENERATION_RINGS = ((255, 255, 255), (255, 190, 0), (0, 215, 225), (235, 80, 235))  # generations 1-4


def _tile(surf: Any, rect: Any, terrain: int) -> None:
    surf.fill(COLOURS[terrain], rect)


def _food(pg: Any, surf: Any, rect: Any, ready: bool) -> None:
    pg.draw.circle(surf, FOOD, rect.center, CELL // 5 if ready else 3)


def _predator(pg: Any, surf: Any, rect: Any, resting: bool) -> None:
    cx, cy, h = rect.centerx, rect.centery, CELL // 2 - 4
    pg.draw.polygon(
        surf, RESTING if resting else PREDATOR, [(cx, cy - h), (cx - h, cy + h), (cx + h, cy + h)]
    )


def _mother(pg: Any, surf: Any, rect: Any, colour: Any, generation: int = 0) -> None:
    pg.draw.circle(surf, colour, rect.center, CELL // 2 - 3)
    ring = 2 if generation == 0 else 3
    pg.draw.circle(surf, GENERATION_RINGS[generation], rect.center, CELL // 2 - 3, ring)


def _baby(pg: Any, surf: Any, rect: Any, colour: Any, carried: bool, crying: bool) -> None:
    radius = CELL // 6 if carried else CELL // 4
    pg.draw.circle(surf, (20, 20, 20), rect.center, radius + 2)
    pg.draw.circle(surf, colour, rect.center, radius)
    if crying:
        pg.draw.circle(surf, CRYING, rect.center, radius + 3, 2)


class Renderer(PygameRenderer):
    view_channels = len(VIEW_CHANNELS)
    max_facts = 4

    def __init__(self, core: NurseryCore, window: bool = False, fps: int = 8):
        self.scalar_names = core.scalar_names
        super().__init__(core, STRIP * core.A, window, fps, "Caring — nursery")

    def paint(self, state: NurseryState, world: int = 0) -> None:
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
                rect = self.cell(y, x)
                _tile(surf, rect, int(cells[y, x]))
                if food[y, x] >= 0:
                    _food(pg, surf, rect, ready=food[y, x] == 0)
        for (y, x), rest in zip(rows(s.predator_pos), slots(s.predator_rest), strict=True):
            _predator(pg, surf, self.cell(y, x), resting=rest > 0)
        alive, pos, kin = slots(s.mother_alive), rows(s.mother_pos), rows(s.kin_marker)
        generation, joined = core.generation.tolist(), slots(s.joined)

        def grown_up(i: int) -> bool:  # her baby became the next generation's mother
            return i + core.founders < core.A and joined[i + core.founders]

        for i in range(core.A):
            if alive[i]:
                _mother(pg, surf, self.cell(*pos[i]), kin[i], generation[i])
        baby_alive, baby_pos, marker = slots(s.baby_alive), rows(s.baby_pos), rows(s.baby_marker)
        carried, energy = slots(s.carried_by), slots(s.energy)
        given_birth, crying = slots(s.has_given_birth), slots(core.crying(s))
        for i in range(core.A):
            if baby_alive[i]:
                _baby(pg, surf, self.cell(*baby_pos[i]), marker[i], carried[i] >= 0, crying[i])
        top = cfg.height * CELL
        for i in range(core.A):
            y = top + i * STRIP + 4
            pg.draw.circle(surf, kin[i], (10, y + 8), 7)
            fill = energy[i] / cfg.energy_max
            pg.draw.rect(surf, (60, 60, 60), (24, y + 2, 100, 12))
            pg.draw.rect(surf, ENERGY if alive[i] else (120, 40, 40), (24, y + 2, int(100 * fill), 12))
            if baby_alive[i]:
                cue = "crying" if crying[i] else "content"
                text = f"baby {cue}" + (", carried" if carried[i] >= 0 else "")
            elif grown_up(i):
                text = f"her baby grew up (mother {i + core.founders})"
            else:
                text = "baby lost" if given_birth[i] else "no baby"
            if not joined[i]:
                text = "not born yet"
            elif cfg.generations > 1:
                text = f"gen {generation[i] + 1}: {text}"
            dead = "dead  " if joined[i] and not alive[i] else ""
            surf.blit(self.font.render(f"{dead}{text}", True, (230, 230, 230)), (132, y + 2))
        surf.blit(self.font.render(f"t={int(s.t[0])}", True, (230, 230, 230)), (self.size[0] - 48, top + 6))

    def legend(self) -> list[tuple[Glyph, str]]:
        pg = self.pg
        generations = [
            (lambda s, r, g=g: _mother(pg, s, r, LEGEND_MOTHER, g), f"mother of generation {g + 1}")
            for g in range(1, self.core.config.generations)
        ]
        return [
            (lambda s, r: _mother(pg, s, r, LEGEND_MOTHER), "mother (her kin colour)"),
            *generations,
            (lambda s, r: _baby(pg, s, r, LEGEND_BABY, False, False), "baby (its marker)"),
            (lambda s, r: _baby(pg, s, r, LEGEND_BABY, True, False), "baby, carried"),
            (lambda s, r: _baby(pg, s, r, LEGEND_BABY, False, True), "baby crying (hungry, or newborn)"),
            (lambda s, r: _predator(pg, s, r, False), "predator"),
            (lambda s, r: _predator(pg, s, r, True), "predator resting"),
            (lambda s, r: _food(pg, s, r, True), "food ready"),
            (lambda s, r: _food(pg, s, r, False), "food regrowing"),
            (lambda s, r: _tile(s, r, HAZARD), "water (deadly)"),
            (lambda s, r: _tile(s, r, WALL), "wall"),
            (lambda s, r: _tile(s, r, PIT), "pit (held-out)"),
        ]

    def agents(self, state: NurseryState, world: int = 0) -> list[AgentFacts]:
        cfg = self.core.config
        s = state.index(slice(world, world + 1))
        kin = s.kin_marker[..., 0].T.tolist()
        out = []
        for i in range(self.core.A):
            alive, energy = bool(s.mother_alive[i, 0]), int(s.energy[i, 0])
            facts = [Fact("energy", f"{energy}/{cfg.energy_max}", energy / cfg.energy_max, ENERGY)]
            if bool(s.baby_alive[i, 0]):
                hunger, health = int(s.hunger[i, 0]), int(s.health[i, 0])
                cue = "crying" if bool(self.core.crying(s)[i, 0]) else "content"
                where = "carried" if int(s.carried_by[i, 0]) >= 0 else "on the ground"
                facts += [
                    Fact("baby hunger", f"{hunger}/{cfg.hunger_max}", hunger / cfg.hunger_max),
                    Fact("baby health", f"{health}/{cfg.baby_health}", health / cfg.baby_health, HEALTH),
                    Fact("baby", f"{cue}, {where}, age {int(s.age[i, 0])}"),
                ]
                if cfg.birth_interval and alive and bool(self.core.another_baby_possible(s)[i, 0]):
                    facts.append(Fact("next birth", f"t={int(s.next_birth[i, 0])} (this baby leaves)"))
            elif i + self.core.founders < self.core.A and bool(s.joined[i + self.core.founders, 0]):
                facts.append(Fact("baby", f"grew up: she is mother {i + self.core.founders}"))
            elif bool(s.has_given_birth[i, 0]):
                again = int(s.births_left[i, 0]) > 0 and alive
                facts.append(
                    Fact("baby", f"dead (next birth at t={int(s.next_birth[i, 0])})" if again else "dead")
                )
            else:
                facts.append(Fact("baby", f"not born yet (birth at t={int(s.next_birth[i, 0])})"))
            generation = int(self.core.generation[i]) + 1
            name = f"mother {i}" + (f" (gen {generation})" if self.core.config.generations > 1 else "")
            if bool(self.core.orphan[i, 0]):  # a baby with no mother: its own facts only
                name, facts = f"orphan {i - self.core.M}", facts[1:]
            elif not bool(s.joined[i, 0]):
                facts = [Fact("mother", "not born yet: her mother's baby grows up into her")]
            out.append(AgentFacts(name, tuple(kin[i]), alive, tuple(facts)))
        return out

    def view_origin(self, state: NurseryState, world: int, agent: int) -> tuple[int, int] | None:
        if not bool(state.mother_alive[agent, world]):
            return None
        r = self.core.config.view_radius
        row, col = state.mother_pos[:, agent, world].tolist()
        return row - r, col - r
