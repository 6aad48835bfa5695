"""A run directory's training state on disk: committing a checkpoint, restoring one, and the CSV logs.

A checkpoint holds everything a resumed run needs to continue exactly (weights, optimiser, sampler,
the whole batched world, running tallies, the β₁ schedule and the stream's state) as safetensors + JSON;
nothing is ever unpickled. `Trainer.save_checkpoint` / `load_checkpoint` call these.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from caring.files import load_checked, load_optimizer, optimizer_tensors, read_json
from caring.schedules import BetaSchedule
from worlds.config import ConfigError


def append_row(path: Path, columns: tuple[str, ...], row: dict) -> None:
    """Append one row to a CSV file (its header first if the file is new); floats to 6 digits."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def save(trainer: Any) -> None:
    """Everything needed to continue exactly: weights, optimiser, sampler, world, bookkeeping."""
    tensors = {f"net.{k}": v.contiguous() for k, v in trainer.net.state_dict().items()}
    tensors |= optimizer_tensors(trainer.opt, "opt")
    tensors |= {f"stream.{k}": v.contiguous() for k, v in trainer.stream.state().items()}
    tensors["sampler"] = trainer.gen.get_state()
    for f in dataclasses.fields(trainer.task.state_class):
        tensors[f"world.{f.name}"] = getattr(trainer.state, f.name).clone()  # some fields alias others
    tensors["obs"] = trainer.obs.contiguous()
    tensors |= {f"tally.{k}": v.contiguous() for k, v in trainer.tally.items()}
    tmp = trainer.out / "checkpoint.safetensors.tmp"
    save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp))
    meta = {
        "update": trainer.update,
        "schedule": trainer.stream.schedule.to_json(),
        "opt_param_groups": trainer.opt.state_dict()["param_groups"],
        "stream": trainer.stream.meta(),
    }
    (trainer.out / "checkpoint.json.tmp").write_text(json.dumps(meta))
    tmp.replace(trainer.out / "checkpoint.safetensors")
    (trainer.out / "checkpoint.json.tmp").replace(trainer.out / "checkpoint.json")
    save_file(
        {k: v.cpu().contiguous() for k, v in trainer.net.state_dict().items()},
        str(trainer.out / "mother.safetensors"),
    )


def restore(trainer: Any) -> None:
    """Load the last checkpoint into a freshly built trainer of the same run, and cut metrics.csv and
    speed.csv back to the rows it had written."""
    tensors = load_checked(trainer.out / "checkpoint.safetensors")
    meta = read_json(trainer.out / "checkpoint.json")
    _upgrade_legacy(tensors, meta)
    dev = trainer.device
    fields = dataclasses.fields(trainer.task.state_class)
    expected = {f"world.{f.name}": getattr(trainer.state, f.name) for f in fields}
    expected["obs"] = trainer.obs
    expected |= {f"tally.{k}": v for k, v in trainer.tally.items()}
    for key, fresh in expected.items():
        if key not in tensors or tensors[key].shape != fresh.shape:
            found = tuple(tensors[key].shape) if key in tensors else "nothing"
            raise ConfigError(
                f"checkpoint in {trainer.out} does not fit this run's world: {key} has shape {found}, "
                f"expected {tuple(fresh.shape)} (a checkpoint from another world or run?)"
            )
    try:
        trainer.net.load_state_dict({k[4:]: v.to(dev) for k, v in tensors.items() if k.startswith("net.")})
    except RuntimeError as err:
        raise ConfigError(
            f"checkpoint in {trainer.out} does not fit the network: {str(err).splitlines()[0]}"
        ) from None
    load_optimizer(trainer.opt, tensors, "opt", meta["opt_param_groups"], dev)
    mine = {k[7:]: v for k, v in tensors.items() if k.startswith("stream.")}
    trainer.stream.load(mine, meta.get("stream", {}))
    trainer.gen.set_state(tensors["sampler"])
    trainer.state = trainer.task.state_class(**{f.name: tensors[f"world.{f.name}"].to(dev) for f in fields})
    trainer.obs = tensors["obs"].to(dev)
    trainer.tally = {k: tensors[f"tally.{k}"].to(dev) for k in trainer.tally}
    trainer.update = int(meta["update"])
    trainer.stream.schedule = BetaSchedule.from_json(meta["schedule"])
    for name in ("metrics.csv", "speed.csv"):  # drop rows written after this checkpoint
        path = trainer.out / name
        if path.exists():
            with path.open(newline="") as f:  # keep the csv module's line endings as written
                lines = f.read().splitlines(keepends=True)
            with path.open("w", newline="") as f:
                f.write("".join(lines[: 1 + trainer.update]))


def _upgrade_legacy(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Checkpoints from before tasks kept the nursery's one tally at top level; from before streams,
    RLHF's state was `pref.*` with its optimiser groups at `pref_opt_param_groups`."""
    if "born" in tensors:
        tensors["tally.born"] = tensors.pop("born")
    for key in [k for k in tensors if k.startswith("pref.")]:
        tensors["stream." + key[5:]] = tensors.pop(key)
    if "pref_opt_param_groups" in meta:
        meta["stream"] = {"opt_param_groups": meta.pop("pref_opt_param_groups")}
