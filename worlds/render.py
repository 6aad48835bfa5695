"""Pygame plumbing every world's renderer shares: a canvas (shown in a window when asked), frames out as
(H, W, 3) uint8 arrays, cleanup. pygame is imported only when a renderer is made, so importing a world
never needs it."""

from __future__ import annotations

import os

import numpy as np


class PygameRenderer:
    """Base of a world's `Renderer`: subclasses paint `self.canvas` in `draw(state, world)` and end with
    `return self.present()`."""

    def __init__(self, size: tuple[int, int], window: bool, fps: int, caption: str):
        if not window:
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        import pygame

        self.pg, self.fps, self.size = pygame, fps, size
        pygame.init()
        self.screen = pygame.display.set_mode(size) if window else None
        if window:
            pygame.display.set_caption(caption)
        self.canvas = pygame.Surface(size)
        self.font = pygame.font.Font(None, 18)
        self.clock = pygame.time.Clock()

    def present(self) -> np.ndarray:
        """Show the canvas in the window (if any) at `fps`, and return it as (H, W, 3) uint8."""
        if self.screen is not None:
            self.pg.event.pump()
            self.screen.blit(self.canvas, (0, 0))
            self.pg.display.flip()
            self.clock.tick(self.fps)
        return np.ascontiguousarray(self.pg.surfarray.array3d(self.canvas).transpose(1, 0, 2))

    def close(self) -> None:
        if self.screen is not None:
            self.pg.display.quit()
        self.screen = None
