"""The PettingZoo face of the lava world: a thin B=1 view over `LavaCore` (no rules live here)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from worlds.config import build_config
from worlds.lava.config import LavaConfig
from worlds.lava.core import EVENTS, N_ACTIONS, TILE_NAMES, LavaCore
from worlds.view import BatchedView, stacked_events


class LavaEnv(BatchedView):
    """One walker `walker_0` heads for the goal past a hazard pool that every shortest path crosses.

    Observations: uint8 vectors, the egocentric window of tile features (`worlds.lava.core.CHANNELS`)
    and one cell of scalars (goal compass, held by quicksand; `SCALARS`), or the same values as float32
    with obs_dtype="float32". compile=True: see `BatchedView`. Actions: Discrete(4) — up,
    right, down, left.
    Infos: the step's events (lava, quicksand, goal, held, steps; see `worlds.lava.core.EVENTS`) as
    ints, and "tile", the name of the tile under the walker.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "lava_v0",
        "render_modes": ["human", "rgb_array"],
        "render_fps": 8,
        "is_parallelizable": True,
    }

    def __init__(
        self,
        render_mode: str | None = None,
        device: str = "cpu",
        obs_dtype: str = "uint8",
        compile: bool = False,
        **config: Any,
    ):
        self.config = build_config(LavaConfig, config)
        self.possible_agents = ["walker_0"]
        super().__init__(LavaCore(self.config, device), N_ACTIONS, render_mode, obs_dtype, compile)

    def step(self, actions: dict[str, Any]):
        self.world, out = self._step(self.world, self._chosen(actions))

        live = self.agents
        observations = self._observations(out.obs)
        terminated = bool(out.terminated.item())
        truncated = bool(out.truncated.item())
        rewards = dict.fromkeys(live, out.reward.item())
        terminations = dict.fromkeys(live, terminated)
        truncations = dict.fromkeys(live, truncated)
        infos = {a: self._info(out.events) for a in live}
        self.agents = [] if terminated or truncated else live
        if self.render_mode == "human":
            self.render()
        return observations, rewards, terminations, truncations, infos

    def _info(self, events: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The walker's events this step (plain ints) and the name of the tile it now stands on."""
        assert self.world is not None
        row, col = self.world.pos[:, 0].tolist()
        values = stacked_events(events, EVENTS).view(-1).tolist()
        info: dict[str, Any] = dict(zip(EVENTS, values, strict=True))
        info["tile"] = TILE_NAMES[int(self.world.cells[row, col, 0])]
        return info

    def _make_renderer(self, window: bool):
        from worlds.lava.render import Renderer

        return Renderer(self.core, window=window, fps=self.metadata["render_fps"])


def parallel_env(**kwargs: Any) -> LavaEnv:
    return LavaEnv(**kwargs)


def env(**kwargs: Any):
    """The AEC form of the lava world (PettingZoo's parallel_to_aec over the parallel env)."""
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(LavaEnv(**kwargs))
