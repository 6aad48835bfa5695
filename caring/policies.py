"""Resolve a `--policy` argument to a policy of a world: a scripted one's name or a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from caring.networks import MotherNet
from caring.protocols import Policy, Task
from caring.runs import is_run, load_mother, run_world
from worlds import rng
from worlds.config import ConfigError

_S_SAMPLE = 202  # random stream for sampling trained mothers' actions


class TrainedMother:
    """A trained network as a policy. Actions are sampled (Gumbel-max) with the world's own counter-based
    randomness, so an evaluation is deterministic per world whatever the batch it runs in."""

    def __init__(self, net: MotherNet):
        self.net = net.eval()

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (N, obs_dim) -> (N, n_actions): what her actions are sampled from."""
        return self.net(obs)[0]

    @torch.no_grad()
    def __call__(self, state: Any, obs: torch.Tensor) -> torch.Tensor:
        B, A, D = obs.shape
        n = self.net.n_actions
        logits = self.logits(obs.reshape(B * A, D))
        u = rng.uniform(state.key, state.t, _S_SAMPLE, A * n).T.reshape(B * A, n)
        gumbel = -torch.log(-torch.log(u.clamp(1e-7, 1 - 1e-7)))
        return (logits + gumbel).argmax(-1).view(B, A)


def load_policy(name: str, core: Any, task: Task) -> Policy:
    if name in task.scripted:
        return task.scripted[name](core)
    path = Path(name)
    if path.is_dir() or "/" in name:
        if not is_run(path):
            raise ConfigError(f"{name} is not a run directory (no config.json)")
        trained_on, _ = run_world(path)
        if trained_on != task.name:
            raise ConfigError(f"{name} was trained on the {trained_on} world, not {task.name}")
        return TrainedMother(load_mother(path, core, task))
    raise ConfigError(
        f"unknown policy {name!r}; valid {task.name} policies: {', '.join(task.scripted)}, or a run directory"
    )
