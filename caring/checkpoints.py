"""A run directory's training state on disk: committing a checkpoint, resuming from whatever a kill or a
full disk left, and the CSV logs.

One rename commits a checkpoint. checkpoint.safetensors holds everything a resume needs to continue
exactly (weights, optimiser, sampler, the whole batched world, running tallies, the β₁ schedule, the
stream's state and the byte length of each log) with its metadata sealed inside the file, and is
written by `write_atomic` (temporary file, fsync, rename, directory fsync) after the logs are fsynced.
A kill before that rename leaves the previous checkpoint, after it the new one; never a mix.
checkpoint.json is a readable copy of the metadata (resuming never reads it, except from runs that
predate the seal); mother.safetensors, the trained mother, is exported from the checkpoint after it,
also atomically. Nothing is ever unpickled. `Trainer.save_checkpoint` / `load_checkpoint` call these.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as serialize

from caring.files import (
    append_text,
    check_form,
    check_tensors,
    fsync_file,
    kind,
    load_optimizer,
    optimizer_tensors,
    read_json,
    read_safetensors,
    truncate,
    write_atomic,
    write_json,
)
from caring.schedules import BetaSchedule
from caring.tblog import TB_DIR
from worlds.config import ConfigError

CHECKPOINT, SUMMARY, MOTHER = "checkpoint.safetensors", "checkpoint.json", "mother.safetensors"
LOGS = ("metrics.csv", "speed.csv")
SNAPSHOTS = "snapshots"  # the mother every `snapshot_every` updates: snapshots/mother_0000025.safetensors
# What only a run started with a config.json writes.
RUN_FILES = (*LOGS, CHECKPOINT, MOTHER, SNAPSHOTS, TB_DIR)
SEAL = "caring"  # the key of the checkpoint's metadata (JSON) in the safetensors header
# What the checkpoint code before the seal left when killed between its two renames (see `_legacy`).
LEGACY_TEMPORARIES = ("checkpoint.safetensors.tmp", "checkpoint.json.tmp")


def append_row(path: Path, columns: tuple[str, ...], row: dict) -> None:
    """Append one row to a CSV log (its header first if the log is new or empty); floats to 6 digits."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    append_text(path, text.getvalue())


def save(trainer: Any) -> None:
    """Commit a checkpoint (the logs' rows it counts are made durable first), then write its readable
    copy and export the mother."""
    out = trainer.out
    for name in LOGS:
        fsync_file(out / name)
    tensors = {f"net.{k}": v.contiguous() for k, v in trainer.net.state_dict().items()}
    tensors |= optimizer_tensors(trainer.opt, "opt")
    tensors |= {f"stream.{k}": v.contiguous() for k, v in trainer.stream.state().items()}
    tensors["sampler"] = trainer.gen.get_state()
    for f in dataclasses.fields(trainer.task.state_class):
        tensors[f"world.{f.name}"] = getattr(trainer.state, f.name).clone()  # some fields alias others
    tensors["obs"] = trainer.obs.contiguous()
    tensors |= {f"tally.{k}": v.contiguous() for k, v in trainer.tally.items()}
    meta = _meta(trainer)
    meta["logs"] = {name: (out / name).stat().st_size if (out / name).exists() else 0 for name in LOGS}
    sealed = {SEAL: json.dumps(meta)}
    write_atomic(out / CHECKPOINT, serialize({k: v.cpu() for k, v in tensors.items()}, metadata=sealed))
    write_json(out / SUMMARY, meta)
    for name in LEGACY_TEMPORARIES:
        (out / name).unlink(missing_ok=True)
    export_mother(trainer)


def _meta(trainer: Any) -> dict[str, Any]:
    """The checkpoint's JSON (without the logs' lengths): what `save` seals, and, from a fresh trainer,
    the form a sealed one must have."""
    return {
        "update": trainer.update,
        "schedule": trainer.stream.schedule.to_json(),
        "opt_param_groups": trainer.opt.state_dict()["param_groups"],
        "stream": trainer.stream.meta(),
    }


def mother_bytes(trainer: Any, metadata: dict[str, str] | None = None) -> bytes:
    """The mother's weights alone as safetensors (what eval, probes and snapshots load)."""
    weights = {k: v.cpu().contiguous() for k, v in trainer.net.state_dict().items()}
    return serialize(weights, metadata=metadata)


def export_mother(trainer: Any) -> None:
    """Write mother.safetensors (the weights alone) unless it already holds exactly these weights."""
    data = mother_bytes(trainer)
    path = trainer.out / MOTHER
    if not path.exists() or path.read_bytes() != data:
        write_atomic(path, data)


def snapshot_name(update: int) -> str:
    return f"mother_{update:07d}.safetensors"


def save_snapshot(trainer: Any) -> None:
    """Keep the mother as she is after this update (weights alone, her update and agent-steps in the
    header). Written before the update's checkpoint: a resume from an earlier one writes it again, with
    the same bytes, when it gets here."""
    meta = {SEAL: json.dumps({"update": trainer.update, "agent_steps": trainer.update * trainer.per_update})}
    write_atomic(trainer.out / SNAPSHOTS / snapshot_name(trainer.update), mother_bytes(trainer, meta))


def restore(trainer: Any) -> None:
    """Resume a freshly built trainer of a run from what is on disk: its last committed checkpoint, the
    logs cut back to the bytes it counted (a torn row, or rows written after it, are dropped) and the
    mother re-exported if her file is not the checkpoint's; with no checkpoint yet (killed before the
    first), the logs are emptied and the run starts over from its config. Everything read is checked
    first: a file that does not fit is one line naming it, and nothing on disk has changed."""
    out = trainer.out
    found = read_checkpoint(out)
    if found is None:
        for name in LOGS:
            truncate(out / name, 0)
        return
    tensors, meta, where = found
    _upgrade_legacy(tensors, meta)
    _check_meta(where, meta, trainer)
    trainer.enter_stage(meta["update"], stagger=False)  # a curriculum's checkpoint holds its stage's worlds
    dev = trainer.device
    fields = dataclasses.fields(trainer.task.state_class)
    expected = {f"world.{f.name}": getattr(trainer.state, f.name) for f in fields}
    expected["obs"] = trainer.obs
    expected |= {f"tally.{k}": v for k, v in trainer.tally.items()}
    check_tensors(where, "this run's world", _having(tensors, ("world.", "obs", "tally.")), expected)
    net = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    check_tensors(where, "the network", net, trainer.net.state_dict())
    check_tensors(where, "the sampler", _having(tensors, ("sampler",)), {"sampler": trainer.gen.get_state()})
    mine = {k[7:]: v for k, v in tensors.items() if k.startswith("stream.")}
    _check_stream(where, trainer.stream, mine)
    known = ("world.", "obs", "tally.", "net.", "sampler", "stream.", "opt.")  # opt.*: checked as loaded
    unknown = sorted(k for k in tensors if not k.startswith(known))
    if unknown:
        raise ConfigError(f"{where} does not fit this run: unexpected tensor {unknown[0]}")
    lengths = meta["logs"] if "logs" in meta else _legacy_lengths(out, meta["update"])
    for name in LOGS:
        size = (out / name).stat().st_size if (out / name).exists() else 0
        if size < lengths[name]:
            raise ConfigError(
                f"{out / name} holds {size} bytes, fewer than the {lengths[name]} of update "
                f"{meta['update']} that {where} counted: restore it, or start the run again"
            )

    trainer.net.load_state_dict({k: v.to(dev) for k, v in net.items()})
    load_optimizer(trainer.opt, tensors, "opt", meta["opt_param_groups"], dev, where)
    try:
        trainer.stream.load(mine, meta.get("stream", {}))
    except (RuntimeError, IndexError, KeyError, ValueError) as err:  # e.g. a buffer longer than the stream's
        raise ConfigError(f"{where} does not fit the {trainer.stream.name} stream: {err}") from None
    trainer.gen.set_state(tensors["sampler"])
    trainer.state = trainer.task.state_class(**{f.name: tensors[f"world.{f.name}"].to(dev) for f in fields})
    trainer.obs = tensors["obs"].to(dev)
    trainer.tally = {k: tensors[f"tally.{k}"].to(dev) for k in trainer.tally}
    trainer.update = meta["update"]
    trainer.stream.schedule = BetaSchedule.from_json(meta["schedule"])
    for name in LOGS:
        truncate(out / name, lengths[name])
    export_mother(trainer)


def _having(tensors: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tensors.items() if k.startswith(prefixes)}


def _check_meta(where: str, meta: dict, trainer: Any) -> None:
    """The checkpoint's JSON has the form this code writes (a β₁ schedule it can rebuild, optimiser
    groups, the stream's metadata, the logs' lengths) and a positive update count."""
    fresh = json.loads(json.dumps(_meta(trainer) | {"logs": dict.fromkeys(LOGS, 0)}))
    check_form(where, "metadata", meta, fresh)
    for key in ("update", "schedule", "opt_param_groups"):
        if key not in meta:
            raise ConfigError(f"{where}: missing field metadata.{key}")
    if meta["update"] < 0:
        raise ConfigError(f"{where}: field metadata.update is {meta['update']}, a negative count")
    logs = meta.get("logs")
    if logs is not None and (logs.keys() != set(LOGS) or min(logs.values()) < 0):
        raise ConfigError(f"{where}: field metadata.logs must give {' and '.join(LOGS)} a length each")
    try:
        BetaSchedule.from_json(meta["schedule"])
    except ConfigError as err:
        raise ConfigError(f"{where}: field metadata.schedule: {err}") from None


def _check_stream(where: str, stream: Any, tensors: dict[str, torch.Tensor]) -> None:
    """The stream's tensors are the ones a fresh stream holds (a buffer it holds empty may have grown
    along its first axis); its optimiser's, if any, are checked when they are loaded."""
    fresh = stream.state()
    for name, like in fresh.items():
        got = tensors.get(name)
        grows = like.dim() > 0 and like.shape[0] == 0
        if got is not None and grows and got.dtype == like.dtype and got.shape[1:] == like.shape[1:]:
            fresh[name] = got  # its length is the stream's to check
    check_tensors(where, f"the {stream.name} stream", _having(tensors, tuple(fresh)), fresh)
    unexpected = sorted(k for k in tensors if k not in fresh and not k.startswith("opt."))
    if unexpected:
        raise ConfigError(f"{where} does not fit the {stream.name} stream: unexpected tensor {unexpected[0]}")


def read_checkpoint(out: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str] | None:
    """(tensors, metadata, the file to name in messages) of a run's committed checkpoint, or None if it
    has none yet."""
    path = out / CHECKPOINT
    if not path.exists() and not (out / SUMMARY).exists():
        return None
    tensors, header = read_safetensors(path)
    if SEAL in header:
        try:
            meta = json.loads(header[SEAL])
        except json.JSONDecodeError as err:
            raise ConfigError(f"corrupt checkpoint {path}: its metadata is not JSON: {err}") from None
        where = str(path)
    else:
        where = str(_legacy(out))
        meta = read_json(Path(where))
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: the checkpoint's metadata must be an object, got {kind(meta)}")
    return tensors, meta, where


def _legacy(out: Path) -> Path:
    """The JSON half of a checkpoint from before the seal. That code renamed checkpoint.safetensors.tmp,
    then checkpoint.json.tmp: a complete .json.tmp beside no .safetensors.tmp is the new weights' pair."""
    if (out / "checkpoint.json.tmp").exists() and not (out / "checkpoint.safetensors.tmp").exists():
        return out / "checkpoint.json.tmp"
    return out / SUMMARY


def _legacy_lengths(out: Path, update: int) -> dict[str, int]:
    """A checkpoint from before the seal counted no bytes: its logs keep their header and `update` rows."""
    lengths = {}
    for name in LOGS:
        path = out / name
        lines = path.read_bytes().splitlines(keepends=True) if path.exists() else []
        if len(lines) <= update:
            raise ConfigError(f"{path} holds fewer rows than the {update} its checkpoint counted: restore it")
        lengths[name] = sum(map(len, lines[: 1 + update]))
    return lengths


def committed_update(out: Path) -> int | None:
    """The update of a run's last good checkpoint (None: none yet, or none readable)."""
    try:
        found = read_checkpoint(out)
    except ConfigError:
        return None
    update = found[1].get("update") if found else None
    return update if isinstance(update, int) else None


@contextmanager
def writing(out: Path) -> Iterator[None]:
    """Around a run's writes: an OSError (a full disk, a lost mount, a read-only directory) ends the
    command with one line naming the file and the last good checkpoint, from which `--resume`
    continues exactly once the cause is gone."""
    try:
        yield
    except OSError as err:
        update = committed_update(out)
        last = (
            f"the last good checkpoint is update {update}"
            if update is not None
            else "there is no checkpoint yet (a resume starts the run over)"
        )
        reason = err.strerror or str(err)
        raise ConfigError(f"{reason[:1].lower()}{reason[1:]} writing {err.filename or out}; {last}") from None


def _upgrade_legacy(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Checkpoints from before tasks kept the nursery's one tally at top level; from before streams,
    RLHF's state was `pref.*` with its optimiser groups at `pref_opt_param_groups`; from before
    generations, a nursery had no `joined` slots (every mother joined at reset) nor `grown` tally."""
    if "born" in tensors:
        tensors["tally.born"] = tensors.pop("born")
    if "world.mother_alive" in tensors and "world.joined" not in tensors:
        tensors["world.joined"] = torch.ones_like(tensors["world.mother_alive"])
    if "tally.born" in tensors and "tally.grown" not in tensors:
        tensors["tally.grown"] = torch.zeros_like(tensors["tally.born"])
    for key in [k for k in tensors if k.startswith("pref.")]:
        tensors["stream." + key[5:]] = tensors.pop(key)
    if "pref_opt_param_groups" in meta:
        meta["stream"] = {"opt_param_groups": meta.pop("pref_opt_param_groups")}
