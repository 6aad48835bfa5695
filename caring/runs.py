"""Reading a run directory, in one place: its config.json (world and training settings), weights files
and the trained mother. Everything a user hands us is checked here, and anything wrong with it is one
`ConfigError` line naming the file. Checkpoints are safetensors + JSON: nothing is ever unpickled.

A run directory holds config.json ({"world_name", "world", "train"}), mother.safetensors, the last
checkpoint (checkpoint.safetensors + checkpoint.json), metrics.csv, speed.csv, plots, and whatever its
training method's stream keeps (RLMF: maternal.safetensors and maternal.json).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from caring.config import TrainConfig
from caring.files import load_checked, read_json
from caring.networks import MotherNet
from caring.tasks import get_task
from worlds.config import ConfigError, build_config


def is_run(path: str | Path) -> bool:
    return (Path(path) / "config.json").exists()


def run_config(out: Path) -> dict:
    """A run directory's config.json, or one clear error if it is not a run directory."""
    if not is_run(out):
        raise ConfigError(f"{out} is not a run directory (no config.json)")
    return read_json(Path(out) / "config.json")


def run_world(out: Path, saved: dict | None = None) -> tuple[str, Any]:
    """(world name, world config) a run directory was started with (runs from before lava: nursery);
    `saved` is its config.json when already read."""
    saved = saved or run_config(out)
    name = saved.get("world_name", "nursery")
    return name, build_config(get_task(name).config_class, saved["world"])


def run_training(out: Path, saved: dict | None = None) -> TrainConfig:
    """The TrainConfig a run directory was started with (settings added since count as defaults)."""
    saved = saved or run_config(out)
    return build_config(TrainConfig, saved["train"])


def started_with(out: Path, world: Any, config: TrainConfig) -> bool:
    """Whether the run in `out` was started with exactly these settings (a setting added to the code
    since the run was saved counts as its default)."""
    saved = run_config(out)
    return run_world(out, saved)[1] == world and run_training(out, saved) == config


def load_mother(run: Path, core: Any, task: Any) -> MotherNet:
    """A run's trained mother, on the core's device, checked against the world she is to act in."""
    hidden = run_training(run).hidden
    weights = load_checked(run / "mother.safetensors")
    obs_dim = weights["trunk_1.weight"].shape[1] if "trunk_1.weight" in weights else -1
    if obs_dim != core.obs_dim:
        raise ConfigError(
            f"{run} was trained on observations of size {obs_dim}, this world gives {core.obs_dim}; "
            "use the run's own world settings"
        )
    net = MotherNet(core.obs_dim, task.n_actions, hidden, predicts_baby="baby_move.weight" in weights)
    try:
        net.load_state_dict(weights)
    except RuntimeError as err:
        raise ConfigError(
            f"{run}/mother.safetensors does not fit the network: {str(err).splitlines()[0]}"
        ) from None
    return net.to(core.device)
