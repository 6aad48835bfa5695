"""Resolve a `--policy` argument to a nursery policy: a scripted mother's name or a run directory."""

from __future__ import annotations

from pathlib import Path

import torch

from caring.evaluate import Policy
from caring.networks import MotherNet
from worlds import rng
from worlds.config import ConfigError
from worlds.nursery.core import N_ACTIONS, NurseryCore, NurseryState
from worlds.nursery.scripted import SCRIPTED

_S_SAMPLE = 202  # random stream for sampling trained mothers' actions


class TrainedMother:
    """A trained network as a policy. Actions are sampled (Gumbel-max) with the world's own counter-based
    randomness, so an evaluation is deterministic per world whatever the batch it runs in."""

    def __init__(self, net: MotherNet):
        self.net = net.eval()

    @torch.no_grad()
    def __call__(self, state: NurseryState, obs: torch.Tensor) -> torch.Tensor:
        B, A, D = obs.shape
        logits, _, _ = self.net(obs.reshape(B * A, D))
        u = rng.uniform(state.key, state.t, _S_SAMPLE, A * N_ACTIONS).T.reshape(B * A, N_ACTIONS)
        gumbel = -torch.log(-torch.log(u.clamp(1e-7, 1 - 1e-7)))
        return (logits + gumbel).argmax(-1).view(B, A)


def load_mother(run: Path, core: NurseryCore) -> MotherNet:
    from caring.train import load_checked, read_json

    hidden = read_json(run / "config.json")["train"]["hidden"]
    weights = load_checked(run / "mother.safetensors")
    obs_dim = weights["trunk_1.weight"].shape[1] if "trunk_1.weight" in weights else -1
    if obs_dim != core.obs_dim:
        raise ConfigError(
            f"{run} was trained on observations of size {obs_dim}, this world gives {core.obs_dim}; "
            "use the run's own world settings"
        )
    net = MotherNet(core.obs_dim, N_ACTIONS, hidden)
    try:
        net.load_state_dict(weights)
    except RuntimeError as err:
        raise ConfigError(
            f"{run}/mother.safetensors does not fit the network: {str(err).splitlines()[0]}"
        ) from None
    return net.to(core.device)


def load_policy(name: str, core: NurseryCore) -> Policy:
    if name in SCRIPTED:
        return SCRIPTED[name](core)
    path = Path(name)
    if path.is_dir() or "/" in name:
        if not (path / "config.json").exists():
            raise ConfigError(f"{name} is not a run directory (no config.json)")
        return TrainedMother(load_mother(path, core))
    raise ConfigError(f"unknown policy {name!r}; valid policies: {', '.join(SCRIPTED)}, or a run directory")


def run_world_settings(name: str) -> dict | None:
    """The world parameters a run directory was trained with (None for scripted policies)."""
    from caring.train import read_json

    path = Path(name) / "config.json"
    return read_json(path)["world"] if path.exists() else None
