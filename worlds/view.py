"""What every world's PettingZoo view shares: the B=1 world it wraps, seeding, spaces, action checks,
`state()`, rendering and cleanup. A world's view adds only how actions, observations, rewards and infos
map to and from its batched core (no rules live in a view)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium.spaces import Box, Discrete
from pettingzoo import ParallelEnv

from worlds import rng


class BatchedView(ParallelEnv):
    """Base of a world's ParallelEnv over its core (`self.core`, B=1). Subclasses set `metadata`,
    `possible_agents`, and implement `step` and `_observations(obs (1, A, obs_dim))`."""

    metadata: ClassVar[dict[str, Any]]

    def __init__(self, core: Any, n_actions: int, render_mode: str | None):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode {render_mode!r} is not one of None, human, rgb_array")
        self.core, self.n_actions, self.render_mode = core, n_actions, render_mode
        self.agents: list[str] = []
        self._observation_space = Box(0, 255, (core.obs_dim,), np.uint8)
        self._action_space = Discrete(n_actions)
        self.world: Any = None  # the core's state of one world, after reset()
        self._renderer: Any = None

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

    def _observations(self, obs: torch.Tensor) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _chosen(self, actions: dict[str, Any]) -> torch.Tensor:
        """(1, A) int64 actions for the core from an actions dict; an agent that is missing or done
        takes action 0."""
        if self.world is None:
            raise ValueError("call reset() before step()")
        chosen = torch.zeros(1, len(self.possible_agents), dtype=torch.int64)
        for agent, action in actions.items():
            if agent not in self.possible_agents:
                raise ValueError(f"unknown agent {agent!r}; agents are {', '.join(self.possible_agents)}")
            if agent in self.agents:
                chosen[0, self.possible_agents.index(agent)] = self._check_action(agent, action)
        return chosen

    def _check_action(self, agent: str, action: Any) -> int:
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action.item()
        if isinstance(action, bool) or not isinstance(action, int | np.integer):
            raise ValueError(f"action for {agent} must be an int in [0, {self.n_actions}), got {action!r}")
        if not 0 <= int(action) < self.n_actions:
            raise ValueError(f"action for {agent} must be in [0, {self.n_actions}), got {action}")
        return int(action)

    def state(self) -> np.ndarray:
        """The global state as one flat vector (every tensor of the world, concatenated)."""
        if self.world is None:
            raise ValueError("call reset() before state()")
        return torch.cat([t[..., 0].reshape(-1).long() for t in self.world.tensors()]).cpu().numpy()

    def render(self):
        if self.render_mode is None or self.world is None:
            return None
        if self._renderer is None:
            self._renderer = self._make_renderer(window=self.render_mode == "human")
        frame = self._renderer.draw(self.world, 0)
        return frame if self.render_mode == "rgb_array" else None

    def _make_renderer(self, window: bool) -> Any:
        """The world's renderer (imported here, so pygame stays unimported until a frame is drawn)."""
        raise NotImplementedError

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
