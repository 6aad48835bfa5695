"""The PettingZoo face of the nursery: a thin B=1 view over `NurseryCore` (no rules live here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from worlds.config import build_config
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import EVENTS, HARM_CAUSES, N_ACTIONS, N_MOVES, NurseryCore
from worlds.view import BatchedView, stacked_events

BabyBrain = Callable[[np.ndarray], np.ndarray]
"""Maps the babies' observations (A, obs_dim) uint8 to their moves (A,) in [0, N_MOVES)."""


def _info(events: list[list[int]], agent: int) -> dict[str, Any]:
    info = {name: events[k][agent] for k, name in enumerate(EVENTS)}
    harmed = [cause for cause in HARM_CAUSES if info[f"baby_harm_{cause}"]]
    info["baby_harmed"] = len(harmed) > 0
    info["harm_cause"] = harmed[0] if harmed else None
    info["hazard_contacts"] = info["mother_hazard"] + info["baby_harm_hazard"]
    return info


class NurseryEnv(BatchedView):
    """Mothers `mother_0..` act in parallel; babies, predators and food are part of the world.

    Observations: uint8 vectors (see `worlds.nursery.core.VIEW_CHANNELS` and `SCALARS`), or the same
    values as float32 with obs_dtype="float32". compile=True: see `BatchedView`.
    Actions: Discrete(9) — stay, up, right, down, left, eat, carry (pick up / put down), feed, shoo.
    Infos: the step's events for each mother and her own baby (harm and its cause, feeds, carries,
    guards, hazard contacts, mother-baby distance, ...).
    Orphans (`orphans` > 0) are babies without a mother: no agent of theirs exists.
    Generations (`generations` > 1): `possible_agents` holds every generation's mothers; a later one
    joins `agents` in the step her mother's baby grows up (with her first observation, reward 0, no
    action taken yet), unless that step ends the episode.
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
        obs_dtype: str = "uint8",
        compile: bool = False,
        **config: Any,
    ):
        self.config = build_config(NurseryConfig, config)
        self.baby_brain = baby_brain
        slots = self.config.n_mothers * self.config.generations
        self.possible_agents = [f"mother_{i}" for i in range(slots)]
        super().__init__(NurseryCore(self.config, device), N_ACTIONS, render_mode, obs_dtype, compile)

    def step(self, actions: dict[str, Any]):
        chosen = self._chosen(actions)
        joined_before = self.world.joined[:, 0] if self.config.generations > 1 else None
        if self.baby_brain is None:
            self.world, out = self._step(self.world, chosen)
        else:
            baby_obs = self.core.observe_babies(self.world)[0].cpu().numpy()
            moves = np.asarray(self.baby_brain(baby_obs)).reshape(-1)
            if moves.shape != (self.core.A,) or moves.min() < 0 or moves.max() >= N_MOVES:
                raise ValueError(f"baby_brain must return {self.core.A} moves in [0, {N_MOVES})")
            baby_actions = torch.as_tensor(moves, dtype=torch.int64).view(1, -1)
            self.world, out = self.core.step(self.world, chosen, baby_actions)

        reward = out.reward.tolist()[0]
        died = out.terminated.tolist()[0]
        truncated = bool(out.truncated.item())
        events = stacked_events(out.events, EVENTS)[0].T.tolist()  # (n_events, A)
        index = self._index
        live = self.agents
        if joined_before is not None and not truncated:  # nobody joins in an episode's last step
            arrived = (self.world.joined[:, 0] & ~joined_before).tolist()
            live = self.agents = live + [a for a in self.possible_agents if arrived[index[a]]]
        obs = self._observations(out.obs)
        rewards = {a: reward[index[a]] for a in live}
        terminations = {a: died[index[a]] for a in live}
        truncations = dict.fromkeys(live, truncated)
        infos = {a: _info(events, index[a]) for a in live}
        self.agents = [a for a in live if not (terminations[a] or truncated)]
        if self.render_mode == "human":
            self.render()
        return obs, rewards, terminations, truncations, infos

    def _present(self) -> list[str]:
        joined = self.world.joined[:, 0].tolist()
        return [a for a in self.possible_agents if joined[self._index[a]]]

    def _make_renderer(self, window: bool):
        from worlds.nursery.render import Renderer

        return Renderer(self.core, window=window, fps=self.metadata["render_fps"])


def parallel_env(**kwargs: Any) -> NurseryEnv:
    return NurseryEnv(**kwargs)


def env(**kwargs: Any):
    """The AEC form of the nursery (PettingZoo's parallel_to_aec over the parallel env)."""
    from pettingzoo.utils.conversions import parallel_to_aec

    return parallel_to_aec(NurseryEnv(**kwargs))


def default_config() -> NurseryConfig:
    return build_config(NurseryConfig)
