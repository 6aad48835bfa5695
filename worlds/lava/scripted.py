"""Scripted walkers, batched like the core; they read the full state (privileged), not observations.

`expert` takes the shortest path that touches no hazard (the demonstrator for RLMF's maternal model);
`shortcut` takes the shortest path whatever it crosses (what a pure reward-maximiser should learn, since
the environment does not penalise lava by default); `random` presses buttons.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from worlds import rng
from worlds.grid import UNREACHABLE
from worlds.lava.core import N_ACTIONS, LavaCore, LavaState

_S_POLICY = 101  # random stream of the scripted walkers (distinct from the world's streams)


class PathFollower:
    """Steps to the neighbour closest to the goal (first in action order on ties)."""

    def __init__(self, core: LavaCore, through_hazards: bool):
        self.core, self.through_hazards = core, through_hazards

    def __call__(self, state: LavaState, obs: torch.Tensor) -> torch.Tensor:
        dist = self.core.distance_to_goal(state, self.through_hazards)  # (H, W, B)
        offsets = torch.tensor([[-1, 0], [0, 1], [1, 0], [0, -1]], device=state.pos.device)  # UP..LEFT
        around = state.pos[:, None, :] + offsets.T[:, :, None]  # (2, 4, B)
        inside = (around[0] >= 0) & (around[0] < self.core.H) & (around[1] >= 0) & (around[1] < self.core.W)
        flat = around[0].clamp(0, self.core.H - 1) * self.core.W + around[1].clamp(0, self.core.W - 1)
        steps = dist.reshape(self.core.H * self.core.W, -1).gather(0, flat)  # (4, B)
        steps = torch.where(inside, steps, UNREACHABLE)
        return steps.argmin(0)[:, None]  # (B, 1); argmin returns the first minimum


class RandomWalker:
    def __init__(self, core: LavaCore):
        self.core = core

    def __call__(self, state: LavaState, obs: torch.Tensor) -> torch.Tensor:
        u = rng.uniform(state.key, state.t, _S_POLICY, 1)[0]
        return (u * N_ACTIONS).long().clamp(max=N_ACTIONS - 1)[:, None]


SCRIPTED: dict[str, Callable[[LavaCore], Callable[[LavaState, torch.Tensor], torch.Tensor]]] = {
    "expert": lambda core: PathFollower(core, through_hazards=False),
    "shortcut": lambda core: PathFollower(core, through_hazards=True),
    "random": RandomWalker,
}
