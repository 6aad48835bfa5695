"""The PettingZoo face of the lava world: a thin B=1 view over `LavaCore` (no rules live here)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium.spaces import Box, Discrete
from pettingzoo import ParallelEnv

from worlds import rng
from worlds.config import build_config
from worlds.lava.config import LavaConfig
from worlds.lava.core import EVENTS, N_ACTIONS, TILE_NAMES, LavaCore, LavaState


class LavaEnv(ParallelEnv):
    """One walker `walker_0` heads for the goal past a hazard pool that every shortest path crosses.

    Observations: uint8 vectors, the egocentric window of tile features (`worlds.lava.core.CHANNELS`)
    and one cell of scalars (goal compass, held by quicksand; `SCALARS`). Actions: Discrete(4) — up,
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

    def __init__(self, render_mode: str | None = None, device: str = "cpu", **config: Any):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode {render_mode!r} is not one of None, human, rgb_array")
        self.config = build_config(LavaConfig, config)
        self.core = LavaCore(self.config, device)
        self.render_mode = render_mode
        self.possible_agents = ["walker_0"]
        self.agents: list[str] = []
        self._observation_space = Box(0, 255, (self.core.obs_dim,), np.uint8)
        self._action_space = Discrete(N_ACTIONS)
        self.world: LavaState | None = None
        self._renderer = None

    def observation_space(self, agent: str) -> Box:
        return self._observation_space

    def action_space(self, agent: str) -> Discrete:
        return self._action_space

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            key = rng.seed_key(seed, self.core.device)
        elif self.world is None:
            key = rng.seed_key(int(np.random.SeedSequence().entropy) % (1 << 62), self.core.device)
        else:
            key = rng.next_key(self.world.key)
        self.world, obs = self.core.reset(key)
        self.agents = self.possible_agents[:]
        observations = self._observations(obs)
        if self.render_mode == "human":
            self.render()
        return observations, {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, Any]):
        if self.world is None:
            raise ValueError("call reset() before step()")
        chosen = torch.zeros(1, 1, dtype=torch.int64)  # (B=1, A=1); a missing walker presses "up"
        for agent, action in actions.items():
            if agent not in self.possible_agents:
                raise ValueError(f"unknown agent {agent!r}; agents are {', '.join(self.possible_agents)}")
            if agent in self.agents:
                chosen[0, 0] = self._check_action(agent, action)
        self.world, out = self.core.step(self.world, chosen)

        obs = self._observations(out.obs)
        live = self.agents
        terminated = bool(out.terminated[0, 0])
        truncated = bool(out.truncated[0])
        observations = {a: obs[a] for a in live}
        rewards = {a: float(out.reward[0, 0]) for a in live}
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
        info: dict[str, Any] = {name: int(events[name][0, 0]) for name in EVENTS}
        info["tile"] = TILE_NAMES[int(self.world.cells[row, col, 0])]
        return info

    def _check_action(self, agent: str, action: Any) -> int:
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action.item()
        if isinstance(action, bool) or not isinstance(action, int | np.integer):
            raise ValueError(f"action for {agent} must be an int in [0, {N_ACTIONS}), got {action!r}")
        if not 0 <= int(action) < N_ACTIONS:
            raise ValueError(f"action for {agent} must be in [0, {N_ACTIONS}), got {action}")
        return int(action)

    def _observations(self, obs: torch.Tensor) -> dict[str, np.ndarray]:
        rows = obs[0].cpu().numpy()  # (A=1, obs_dim)
        return {a: rows[0] for a in self.agents}

    def state(self) -> np.ndarray:
        """The global state as one flat vector (every tensor of the world, concatenated)."""
        if self.world is None:
            raise ValueError("call reset() before state()")
        return torch.cat([t[..., 0].reshape(-1).long() for t in self.world.tensors()]).cpu().numpy()

    def render(self):
        if self.render_mode is None or self.world is None:
            return None
        from worlds.lava.render import Renderer  # pygame stays unimported until a frame is drawn

        if self._renderer is None:
            self._renderer = Renderer(
                self.core, window=self.render_mode == "human", fps=self.metadata["render_fps"]
            )
        frame = self._renderer.draw(self.world, 0)
        return frame if self.render_mode == "rgb_array" else None

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def parallel_env(**kwargs: Any) -> LavaEnv:
    return LavaEnv(**kwargs)


def env(**kwargs: Any):
    """The AEC form of the lava world (PettingZoo's parallel_to_aec over the parallel env)."""
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(LavaEnv(**kwargs))
