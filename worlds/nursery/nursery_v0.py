"""The PettingZoo face of the nursery: a thin B=1 view over `NurseryCore` (no rules live here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium.spaces import Box, Discrete
from pettingzoo import ParallelEnv

from worlds import rng
from worlds.config import build_config
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import EVENTS, HARM_CAUSES, N_ACTIONS, N_MOVES, NurseryCore, NurseryState

BabyBrain = Callable[[np.ndarray], np.ndarray]
"""Maps the babies' observations (A, obs_dim) uint8 to their moves (A,) in [0, N_MOVES)."""


def _info(events: list[list[int]], agent: int) -> dict[str, Any]:
    info = {name: events[k][agent] for k, name in enumerate(EVENTS)}
    harmed = [cause for cause in HARM_CAUSES if info[f"baby_harm_{cause}"]]
    info["baby_harmed"] = len(harmed) > 0
    info["harm_cause"] = harmed[0] if harmed else None
    info["hazard_contacts"] = info["mother_hazard"] + info["baby_harm_hazard"]
    return info


class NurseryEnv(ParallelEnv):
    """Mothers `mother_0..` act in parallel; babies, predators and food are part of the world.

    Observations: uint8 vectors (see `worlds.nursery.core.VIEW_CHANNELS` and `SCALARS`).
    Actions: Discrete(9) — stay, up, right, down, left, eat, carry (pick up / put down), feed, shoo.
    Infos: the step's events for each mother and her own baby (harm and its cause, feeds, carries,
    guards, hazard contacts, mother-baby distance, ...).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "name": "nursery_v0",
        "render_modes": ["human", "rgb_array"],
        "render_fps": 8,
        "is_parallelizable": True,
    }

    def __init__(
        self,
        render_mode: str | None = None,
        device: str = "cpu",
        baby_brain: BabyBrain | None = None,
        **config: Any,
    ):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode {render_mode!r} is not one of None, human, rgb_array")
        self.config = build_config(NurseryConfig, config)
        self.core = NurseryCore(self.config, device)
        self.render_mode = render_mode
        self.baby_brain = baby_brain
        self.possible_agents = [f"mother_{i}" for i in range(self.config.n_mothers)]
        self.agents: list[str] = []
        self._index = {name: i for i, name in enumerate(self.possible_agents)}
        self._observation_space = Box(0, 255, (self.core.obs_dim,), np.uint8)
        self._action_space = Discrete(N_ACTIONS)
        self.world: NurseryState | None = None
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
        chosen = torch.zeros(1, self.config.n_mothers, dtype=torch.int64)
        for agent, action in actions.items():
            if agent not in self._index:
                raise ValueError(f"unknown agent {agent!r}; agents are {', '.join(self.possible_agents)}")
            if agent in self.agents:
                chosen[0, self._index[agent]] = self._check_action(agent, action)
        baby_actions = None
        if self.baby_brain is not None:
            baby_obs = self.core.observe_babies(self.world)[0].cpu().numpy()
            moves = np.asarray(self.baby_brain(baby_obs)).reshape(-1)
            if moves.shape != (self.config.n_mothers,) or moves.min() < 0 or moves.max() >= N_MOVES:
                raise ValueError(f"baby_brain must return {self.config.n_mothers} moves in [0, {N_MOVES})")
            baby_actions = torch.as_tensor(moves, dtype=torch.int64).view(1, -1)
        self.world, out = self.core.step(self.world, chosen, baby_actions)

        obs = self._observations(out.obs)
        reward = out.reward[0].tolist()
        died = out.terminated[0].tolist()
        truncated = bool(out.truncated[0])
        events = torch.stack([out.events[name][0] for name in EVENTS]).tolist()
        live = self.agents
        observations = {a: obs[a] for a in live}
        rewards = {a: reward[self._index[a]] for a in live}
        terminations = {a: bool(died[self._index[a]]) for a in live}
        truncations = dict.fromkeys(live, truncated)
        infos = {a: _info(events, self._index[a]) for a in live}
        self.agents = [a for a in live if not (terminations[a] or truncated)]
        if self.render_mode == "human":
            self.render()
        return observations, rewards, terminations, truncations, infos

    def _check_action(self, agent: str, action: Any) -> int:
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action.item()
        if isinstance(action, bool) or not isinstance(action, int | np.integer):
            raise ValueError(f"action for {agent} must be an int in [0, {N_ACTIONS}), got {action!r}")
        if not 0 <= int(action) < N_ACTIONS:
            raise ValueError(f"action for {agent} must be in [0, {N_ACTIONS}), got {action}")
        return int(action)

    def _observations(self, obs: torch.Tensor) -> dict[str, np.ndarray]:
        rows = obs[0].cpu().numpy()
        return {a: rows[self._index[a]] for a in self.agents}

    def state(self) -> np.ndarray:
        """The global state as one flat vector (every tensor of the world, concatenated)."""
        if self.world is None:
            raise ValueError("call reset() before state()")
        return torch.cat([t[..., 0].reshape(-1).long() for t in self.world.tensors()]).cpu().numpy()

    def render(self):
        if self.render_mode is None or self.world is None:
            return None
        from worlds.nursery.render import Renderer  # pygame stays unimported until a frame is drawn

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


def parallel_env(**kwargs: Any) -> NurseryEnv:
    return NurseryEnv(**kwargs)


def env(**kwargs: Any):
    """The AEC form of the nursery (PettingZoo's parallel_to_aec over the parallel env)."""
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(NurseryEnv(**kwargs))


def default_config() -> NurseryConfig:
    return build_config(NurseryConfig)
