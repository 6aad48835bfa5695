"""Reading a run directory, in one place: its config.json (world and training settings), weights files
and the trained mother. Everything a user hands us is checked here against the form we write (fields,
their types and ranges; tensors' names, shapes and dtypes), and anything wrong with it is one
`ConfigError` line naming the file and the field. Checkpoints are safetensors + JSON: nothing is ever
unpickled.

A run directory holds config.json ({"world_name", "world", "train"}), mother.safetensors, the last
checkpoint (checkpoint.safetensors, its metadata sealed inside; checkpoint.json a readable copy),
metrics.csv, speed.csv, plots, and whatever its training method's stream keeps (RLMF:
maternal.safetensors and maternal.json). Writing and resuming one is `caring.checkpoints`.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from caring.checkpoints import SNAPSHOTS, snapshot_name
from caring.config import TrainConfig
from caring.files import check_tensors, kind, load_checked, read_json
from caring.networks import MotherNet
from caring.streams import get_stream
from caring.tasks import get_task
from worlds.config import ConfigError, build_config

FIELDS = ("world_name", "world", "train")


def is_run(path: str | Path) -> bool:
    return (Path(path) / "config.json").exists()


def run_config(out: Path) -> dict:
    """A run directory's config.json, checked: an object of the world's name (runs from before lava
    have none: nursery), its settings and the training settings; or one clear error."""
    path = Path(out) / "config.json"
    if not path.exists():
        raise ConfigError(f"{out} is not a run directory (missing file {path})")
    saved = read_json(path)
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {kind(saved)}")
    for key in saved:
        if key not in FIELDS:
            raise ConfigError(f"{path}: unknown field {key}; valid: {', '.join(FIELDS)}")
    for key in ("world", "train"):
        if key not in saved:
            raise ConfigError(f"{path}: missing field {key}")
        if not isinstance(saved[key], dict):
            raise ConfigError(f"{path}: field {key} must be an object of settings, got {kind(saved[key])}")
    name = saved.get("world_name", "nursery")
    if not isinstance(name, str):
        raise ConfigError(f"{path}: field world_name must be a string, got {kind(name)}")
    _field(path, "world_name", get_task, name)
    return saved


def _field(path: Path, field: str, build: Any, *args: Any) -> Any:
    """`build(*args)`, its error naming the file and the field."""
    try:
        return build(*args)
    except ConfigError as err:
        raise ConfigError(f"{path}: field {field}: {err}") from None


def run_world(out: Path, saved: dict | None = None) -> tuple[str, Any]:
    """(world name, world config) a run directory was started with; `saved` is its config.json when
    already read (by `run_config`)."""
    saved = saved or run_config(out)
    name = saved.get("world_name", "nursery")
    world_class = get_task(name).config_class
    # A setting added since the run was saved takes its default, not its preset's value: the run's
    # world had no such rule, and a preset changed later must not change a finished run's world.
    values = saved["world"]
    if isinstance(values, dict):
        values = {f.name: f.default for f in dataclasses.fields(world_class)} | values
    return name, _field(Path(out) / "config.json", "world", build_config, world_class, values)


def run_training(out: Path, saved: dict | None = None) -> Any:
    """The TrainConfig a run directory was started with (settings added since count as defaults)."""
    saved = saved or run_config(out)
    return _field(Path(out) / "config.json", "train", build_config, TrainConfig, saved["train"])


def started_with(out: Path, world: Any, config: Any) -> bool:
    """Whether the run in `out` was started with exactly these settings (a setting added to the code
    since the run was saved counts as its default)."""
    saved = run_config(out)
    return run_world(out, saved)[1] == world and run_training(out, saved) == config


def extended_by(out: Path, world: Any, config: Any) -> bool:
    """Whether `config` is the run in `out`'s settings with a larger step budget, one the run can train on
    to as if it had had it from the start: no learning-rate annealing (it falls over the whole budget)
    and no weaning phase (it starts where the budget ends)."""
    saved = run_config(out)
    started = run_training(out, saved)
    return (
        run_world(out, saved)[1] == world
        and config.steps > started.steps
        and dataclasses.replace(config, steps=started.steps) == started
        and not config.lr_anneal
        and not config.wean_steps
    )


SNAPSHOT = re.compile(r"mother_(\d{7})\.safetensors")


def snapshots(run: Path) -> list[tuple[int, Path]]:
    """The mothers a run kept along the way (`snapshot_every`), as (update, file), oldest first; files in
    snapshots/ that are not named as we name them are not ours and are left out."""
    found = []
    for path in (Path(run) / "snapshots").glob("mother_*.safetensors"):
        match = SNAPSHOT.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def mother_net(core: Any, n_actions: int, config: Any) -> MotherNet:
    """The untrained network a TrainConfig describes for a world's core (its method decides whether it
    predicts the baby; `kin_match` needs a world whose observations carry kin markers)."""
    predicts_baby = get_stream(config.method).predicts_baby
    markers = None
    if config.kin_match:
        if not hasattr(core, "marker_inputs"):
            raise ConfigError("kin_match needs a world with kin markers (the nursery); set kin_match=0")
        markers = core.marker_inputs()
    return MotherNet(
        core.obs_dim,
        n_actions,
        config.hidden,
        predicts_baby,
        config.critics,
        config.value_norm,
        config.kin_match,
        markers,
    )


def scheduled_updates(config: Any, agents: int) -> int:
    """Updates of a run's scheduled phase (`steps` in updates of worlds x agents x rollout); β₁ is 0 in
    the updates after it (`wean_steps`)."""
    return max(1, -(-config.steps // (config.worlds * agents * config.rollout)))


def updates_total(config: Any, agents: int) -> int:
    """Updates of a whole run: the scheduled phase, then `wean_steps` with β₁ = 0."""
    return scheduled_updates(config, agents) + -(
        -config.wean_steps // (config.worlds * agents * config.rollout)
    )


def weaning_mother(run: Path, agents: int) -> Path:
    """The snapshot of a weaned run's mother as she was when β₁ went to 0 (the trainer keeps it)."""
    return Path(run) / SNAPSHOTS / snapshot_name(scheduled_updates(run_training(run), agents))


def load_mother(run: Path, core: Any, task: Any, weights: Path | None = None) -> MotherNet:
    """A run's trained mother (or, given `weights`, one of its snapshots), on the core's device, checked
    against the world she is to act in and the network her run trained (names, shapes, dtypes: never
    cast)."""
    saved = run_config(run)
    config = run_training(run, saved)
    path = weights or run / "mother.safetensors"
    resume = f"`caring train {run_world(run, saved)[0]} --out {run} --resume`"
    if not path.exists():
        raise ConfigError(f"{run} has no trained mother yet (no {path.name}): {resume} trains and writes her")
    try:
        tensors = load_checked(path)
    except ConfigError as err:
        raise ConfigError(f"{err}; {resume} writes her again from the run's checkpoint") from None
    net = mother_net(core, task.n_actions, config)
    first, wanted = tensors.get("trunk_1.weight"), net.trunk_1.weight
    if first is not None and first.dim() == 2 and first.shape[1] != wanted.shape[1]:
        raise ConfigError(
            f"{run}'s first layer reads {first.shape[1]} inputs, this world gives {wanted.shape[1]}; "
            "use the run's own world settings"
        )
    check_tensors(str(path), "the network", tensors, net.state_dict())
    net.load_state_dict(tensors)
    return net.to(core.device)
