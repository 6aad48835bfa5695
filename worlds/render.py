"""Pygame plumbing every world's renderer shares: a canvas (shown in a window when asked), frames out as
(H, W, 3) uint8 arrays, cleanup, and what a viewer built on top needs from a world: a legend of its
glyphs, each agent's facts, and where each agent's view lies on the grid (to paint attributions on the
cells she sees). pygame is imported only when a renderer is made, so importing a world never needs it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

CELL = 36  # pixels per grid cell, in every world


@dataclass(frozen=True)
class Fact:
    """One line a viewer shows about an agent: a label, its value as text, and a bar of this colour when
    `share` (0..1) is given."""

    label: str
    text: str
    share: float | None = None
    colour: tuple[int, int, int] = (235, 150, 40)


@dataclass(frozen=True)
class AgentFacts:
    """What a viewer shows about one agent, from the world's state (more than the agent itself sees)."""

    name: str
    colour: tuple[int, int, int]
    alive: bool
    facts: tuple[Fact, ...]


Glyph = Callable[[Any, Any], None]  # (surface, pygame.Rect of one cell) -> None: draws a legend entry


def to_array(pg: Any, surface: Any) -> np.ndarray:
    """A pygame surface as (H, W, 3) uint8."""
    return np.ascontiguousarray(pg.surfarray.array3d(surface).transpose(1, 0, 2))


class PygameRenderer:
    """Base of a world's `Renderer`: subclasses paint `self.canvas` in `paint(state, world)` (the grid in
    the top `grid_size` pixels, a status strip below) and tell a viewer `legend`, `agents`,
    `view_origin`, `view_channels`, `scalar_names` and `max_facts`."""

    view_channels: int  # channels per cell of the observation's view (cells first, channels innermost)
    scalar_names: tuple[str, ...]  # the observation's scalars, in the cells after the view
    max_facts: int  # the most facts `agents` gives one agent (a viewer's panel keeps one size)

    def __init__(self, core: Any, strip: int, window: bool, fps: int, caption: str):
        """A canvas of the core's grid (`core.H` x `core.W` cells) with a status strip `strip` pixels high
        below it; `core.V` is the side of an agent's view."""
        if not window:  # drawing only: no display needed, so it works headless
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        self.core, self.pg, self.fps = core, pygame, fps
        self.grid_size = (core.W * CELL, core.H * CELL)  # (width, height) of the grid in pixels
        self.size = size = (core.W * CELL, core.H * CELL + strip)
        pygame.init()
        self.screen = None
        if window:
            try:
                self.screen = pygame.display.set_mode(size)
            except pygame.error as err:  # no display here (ssh, a headless server): one clear line
                raise OSError(
                    f"cannot open a window ({err}); write a file instead (caring render --out)"
                ) from None
            pygame.display.set_caption(caption)
        self.canvas = pygame.Surface(size)
        self.font = pygame.font.Font(None, 18)
        self.clock = pygame.time.Clock()

    def paint(self, state: Any, world: int = 0) -> None:
        """Paint world `world` of a batched state on `self.canvas`."""
        raise NotImplementedError

    def draw(self, state: Any, world: int = 0) -> np.ndarray:
        """Draw world `world` of a batched state; returns the frame as (H, W, 3) uint8."""
        self.paint(state, world)
        return self.present()

    def present(self) -> np.ndarray:
        """Show the canvas in the window (if any) at `fps`, and return it as (H, W, 3) uint8."""
        if self.screen is not None:
            self.pg.event.pump()
            self.show(self.canvas)
            self.clock.tick(self.fps)
        return to_array(self.pg, self.canvas)

    def show(self, surface: Any) -> None:
        """Show `surface` in the window, resized to fit it (a viewer shows the canvas with a panel)."""
        if self.screen is None:
            return
        if self.screen.get_size() != surface.get_size():
            self.screen = self.pg.display.set_mode(surface.get_size())
        self.screen.blit(surface, (0, 0))
        self.pg.display.flip()

    def cell(self, row: int, col: int) -> Any:
        """The pygame.Rect of grid cell (row, col) on the canvas."""
        return self.pg.Rect(col * CELL, row * CELL, CELL - 1, CELL - 1)

    def legend(self) -> list[tuple[Glyph, str]]:
        """(glyph, what it is) for everything the grid shows."""
        raise NotImplementedError

    def agents(self, state: Any, world: int = 0) -> list[AgentFacts]:
        """Each agent's facts, in agent order."""
        raise NotImplementedError

    def view_origin(self, state: Any, world: int, agent: int) -> tuple[int, int] | None:
        """Grid (row, col) of the top-left cell of the agent's view, or None when she sees nothing."""
        raise NotImplementedError

    def split_view(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-input values (obs_dim,) -> (per view cell (V, V), summed over its channels; per scalar)."""
        V, C = self.core.V, self.view_channels
        cells = values[: V * V * C].reshape(V, V, C).sum(-1)
        return cells, values[V * V * C :][: len(self.scalar_names)]

    def paint_heat(self, origin: tuple[int, int], heat: np.ndarray, alpha: int = 170) -> None:
        """A translucent heat map over the grid cells of a view whose top-left is `origin`: heat (V, V) in
        [-1, 1], red where positive, blue where negative, clear at 0; cells off the grid are skipped."""
        pg = self.pg
        layer = pg.Surface(self.grid_size, pg.SRCALPHA)
        width, height = self.grid_size
        for (dy, dx), value in np.ndenumerate(heat):
            rect = self.cell(origin[0] + dy, origin[1] + dx)
            if value == 0 or rect.x < 0 or rect.y < 0 or rect.right > width or rect.bottom > height:
                continue
            colour = (255, 40, 0) if value > 0 else (0, 90, 255)
            layer.fill((*colour, int(alpha * min(1.0, abs(float(value))))), rect)
        self.canvas.blit(layer, (0, 0))

    def close(self) -> None:
        if self.screen is not None:
            self.pg.display.quit()
        self.screen = None
