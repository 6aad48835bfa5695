"""What every world's PettingZoo view shares: the B=1 world it wraps, seeding, spaces, action checks,
`state()`, rendering and cleanup. A world's view adds only how actions, observations, rewards and infos
map to and from its batched core (no rules live in a view)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium.spaces import Box, Discrete
from pettingzoo import ParallelEnv

from worlds import rng
from worlds.config import ConfigError

# Observation dtypes a view can hand out: the core's uint8 values, or the same values cast to float32
# (unscaled, 0.0..255.0) for frameworks that feed observations straight into float layers (RLlib).
OBS_DTYPES = {"uint8": (np.uint8, torch.uint8), "float32": (np.float32, torch.float32)}


def _check_obs_dtype(obs_dtype: str) -> tuple[type, torch.dtype]:
    if obs_dtype not in OBS_DTYPES:
        raise ConfigError(f"obs_dtype must be one of {', '.join(OBS_DTYPES)}, got {obs_dtype!r}")
    return OBS_DTYPES[obs_dtype]


def observation_box(obs_dim: int, obs_dtype: str) -> Box:
    """One agent's observation space: values 0..255 as uint8, or as float32 (see OBS_DTYPES)."""
    return Box(0, 255, (obs_dim,), _check_obs_dtype(obs_dtype)[0])


def torch_dtype(obs_dtype: str) -> torch.dtype:
    return _check_obs_dtype(obs_dtype)[1]


def stacked_events(events: Mapping[str, torch.Tensor], names: tuple[str, ...]) -> torch.Tensor:
    """A step's events (name -> (B, A)) as one (B, A, len(names)) tensor; the compiled step already
    returns them stacked (worlds.compiled.EventTable), the eager core as a dict."""
    stacked = getattr(events, "stacked", None)
    return stacked if stacked is not None else torch.stack([events[name] for name in names], -1)


class BatchedView(ParallelEnv):
    """Base of a world's ParallelEnv over its core (`self.core`, B=1). Subclasses set `metadata` and
    `possible_agents` before calling this constructor, and implement `step` with `_chosen`, `_step`
    and `_observations`.

    Speed (a one-world step is the core's ~900 tiny tensor operations): `compile=True` steps an
    ahead-of-time compiled copy of the core's own step (worlds.compiled; bit-identical, built once
    per config and cached on disk); episodes reset without a seed come from a batch of the next
    `PREFETCH` episodes of the world's key chain, reset together in one core call."""

    metadata: ClassVar[dict[str, Any]]
    possible_agents: list[str]
    PREFETCH = 8

    def __init__(
        self,
        core: Any,
        n_actions: int,
        render_mode: str | None,
        obs_dtype: str = "uint8",
        compile: bool = False,
    ):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode {render_mode!r} is not one of None, human, rgb_array")
        self.core, self.n_actions, self.render_mode = core, n_actions, render_mode
        self.agents: list[str] = []
        self._observation_space = observation_box(core.obs_dim, obs_dtype)
        self._obs_np_dtype = OBS_DTYPES[obs_dtype][0]
        self._action_space = Discrete(n_actions)
        self._index = {agent: i for i, agent in enumerate(self.possible_agents)}
        self.world: Any = None  # the core's state of one world, after reset()
        self._upcoming: list[tuple[Any, torch.Tensor]] = []  # next episodes of the key chain, in order
        self._renderer: Any = None
        self._step = core.step
        if compile:
            from worlds.compiled import compiled_step

            example, _ = core.reset(rng.seed_key(0, core.device))
            self._step = compiled_step(core, example, n_actions) or core.step

    def observation_space(self, agent: str) -> Box:
        return self._observation_space

    def action_space(self, agent: str) -> Discrete:
        return self._action_space

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._upcoming = []
            self.world, obs = self.core.reset(rng.seed_key(rng.checked_seed(seed), self.core.device))
        elif self.world is None:
            entropy = int(np.random.SeedSequence().entropy) % rng.MAX_SEED
            self.world, obs = self.core.reset(rng.seed_key(entropy, self.core.device))
        else:
            self.world, obs = self._next_episode()
        self.agents = self._present()
        observations = self._observations(obs)
        if self.render_mode == "human":
            self.render()
        return observations, {agent: {} for agent in self.agents}

    def _next_episode(self) -> tuple[Any, torch.Tensor]:
        """The episode after the current one (key `rng.next_key(world.key)`), from the prefetched batch;
        a core's reset gives each world the same episode whatever shares its batch."""
        if not self._upcoming:
            keys, key = [], self.world.key
            for _ in range(self.PREFETCH):
                key = rng.next_key(key)
                keys.append(key)
            states, obs = self.core.reset(torch.cat(keys))
            self._upcoming = [(states.world(i), obs[i : i + 1]) for i in range(self.PREFETCH)]
        return self._upcoming.pop(0)

    def _present(self) -> list[str]:
        """The agents in the world at reset (a world whose agents join later overrides this)."""
        return self.possible_agents[:]

    def _observations(self, obs: torch.Tensor) -> dict[str, np.ndarray]:
        """obs (1, A, obs_dim) uint8 -> each live agent's row, in the view's obs_dtype."""
        rows = obs[0].cpu().numpy().astype(self._obs_np_dtype, copy=False)
        return {a: rows[self._index[a]] for a in self.agents}

    def _chosen(self, actions: dict[str, Any]) -> torch.Tensor:
        """(1, A) int64 actions for the core from an actions dict; an agent that is missing or done
        takes action 0."""
        if self.world is None:
            raise ValueError("call reset() before step()")
        if not isinstance(actions, Mapping):
            raise ValueError(f"step() takes a dict of actions {{agent: int}}, got {type(actions).__name__}")
        chosen = [0] * self.core.A  # the core's slots: orphans' never act
        for agent, action in actions.items():
            if agent not in self._index:
                raise ValueError(f"unknown agent {agent!r}; agents are {', '.join(self.possible_agents)}")
            if agent in self.agents:
                chosen[self._index[agent]] = self._check_action(agent, action)
        return torch.from_numpy(np.array([chosen], dtype=np.int64)).to(self.core.device)

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
