"""Files, safely: crash-safe writes (a kill or a full disk at any moment never leaves half a file where
a whole one was), JSON without bare NaN (a metric that does not exist, e.g. steps to a goal never
reached, is null), reads that turn a missing, corrupt or ill-formed file into one clear error naming the
file and the field, and an optimiser's state as named tensors for safetensors checkpoints (never pickle).

Fault injection, for the crash tests only: with CARING_CRASH_AT=POINT:N in the environment the process
exits at once (status CRASH_STATUS, no flush, no cleanup: what kill -9 leaves) the N-th time a write
reaches POINT. Points are "FILE:before" (nothing of this write done), "FILE:torn" (half the bytes
written), "FILE:written" (a temporary file complete and fsynced, not yet renamed), "FILE:renamed" and
"FILE:appended", FILE being the file's name, e.g. CARING_CRASH_AT=checkpoint.safetensors:renamed:2.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import safe_open

from worlds.config import ConfigError

CRASH_ENV, CRASH_STATUS = "CARING_CRASH_AT", 86
TEMP_SUFFIX = ".partial"  # a temporary file of write_atomic: `.NAME.RANDOM.partial` beside NAME
_reached: Counter[str] = Counter()


def crash_point(point: str) -> None:
    """Exit at once if CARING_CRASH_AT names this point and this is its N-th occurrence (tests only)."""
    spec = os.environ.get(CRASH_ENV)
    if spec and spec.rpartition(":")[0] == point:
        _reached[point] += 1
        if _reached[point] == int(spec.rpartition(":")[2]):
            os._exit(CRASH_STATUS)


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError while writing `path` names `path` (a failed write() names nothing, mkstemp its
    temporary name), so one line can say which file a full disk stopped."""
    try:
        yield
    except OSError as err:
        if err.filename == str(path):
            raise
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None


def _write(f: BinaryIO, data: bytes, name: str) -> None:
    """Write in two halves around a crash point: the torn file a kill or a full disk can leave."""
    half = len(data) // 2
    f.write(data[:half])
    f.flush()
    crash_point(f"{name}:torn")
    f.write(data[half:])


def fsync_dir(path: Path) -> None:
    """Make the renames and new names in a directory durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno != errno.EINVAL:  # EINVAL: a filesystem that cannot sync a directory
            raise
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Make what was appended to a file durable (nothing if it does not exist)."""
    if path.exists():
        with _naming(path), path.open("rb") as f:
            os.fsync(f.fileno())


@contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold the run directory exclusively while writing it: a second process writing the same run (a
    sweep worker orphaned by a killed sweep, two `--resume`s) gets one clear error instead of
    interleaving checkpoints. The kernel drops the lock when its holder dies, even by kill -9."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"{directory} is being written by another process (a training or sweep worker still "
                "running); stop it, or wait for it, before resuming this run"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def write_atomic(path: Path, data: str | bytes) -> None:
    """After a kill or a full disk at any moment `path` holds its old bytes or the new ones, never a mix:
    the bytes go to a temporary file beside it, flushed and fsynced, renamed over it, and the directory
    is fsynced so the rename survives a power cut too. A failed write removes its temporary file."""
    path = Path(path)
    data = data.encode() if isinstance(data, str) else data
    crash_point(f"{path.name}:before")
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                _write(f, data, path.name)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            crash_point(f"{path.name}:written")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        crash_point(f"{path.name}:renamed")
        fsync_dir(path.parent)


def append_text(path: Path, text: str) -> None:
    """Append to a log. A kill or a full disk can tear its last line: a resume cuts the log back to the
    length its checkpoint recorded (`caring.checkpoints`)."""
    crash_point(f"{path.name}:before")
    with _naming(path), path.open("ab") as f:
        _write(f, text.encode(), path.name)
    crash_point(f"{path.name}:appended")


def truncate(path: Path, size: int) -> None:
    """Cut a file back to `size` bytes, durably (nothing if it is not longer)."""
    if path.exists() and path.stat().st_size > size:
        with _naming(path), path.open("r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())


def remove_temporaries(directory: Path) -> None:
    """Delete the temporary files interrupted writes left in a directory and the folders inside it."""
    for tmp in directory.glob(f"**/.*{TEMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)


def finite(data: Any) -> Any:
    """NaN and infinities as JSON's null, through dicts, lists and tuples."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite(v) for v in data]
    return data


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(finite(data), indent=1))


def read_json(path: Path) -> Any:
    """A JSON file's content, or one clear error (missing, unreadable, not JSON)."""
    if not path.exists():
        raise ConfigError(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"corrupt JSON {path}: {err}") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None


def kind(value: Any) -> str:
    """What a JSON value is, for messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "an integer"}
    return names.get(type(value), "null" if value is None else "a number")


def check_form(where: str, field: str, found: Any, fresh: Any) -> None:
    """Refuse JSON that does not have the form of `fresh` (what this code would write now): objects
    with no unknown keys (a missing one takes its default), lists of the same length, values of the same
    type, numbers finite. One line naming the file and the field."""
    if isinstance(fresh, dict):
        if not isinstance(found, dict):
            raise ConfigError(f"{where}: field {field} must be an object, got {kind(found)}")
        for key, value in found.items():
            if key not in fresh:
                raise ConfigError(
                    f"{where}: unknown field {field}.{key}; valid: {', '.join(map(str, fresh))}"
                )
            check_form(where, f"{field}.{key}", value, fresh[key])
    elif isinstance(fresh, list | tuple):
        if not isinstance(found, list) or len(found) != len(fresh):
            got = f"a list of {len(found)}" if isinstance(found, list) else kind(found)
            raise ConfigError(f"{where}: field {field} must be a list of {len(fresh)}, got {got}")
        for i, (value, like) in enumerate(zip(found, fresh, strict=True)):
            check_form(where, f"{field}[{i}]", value, like)
    elif type(found) is not type(fresh) and not (type(fresh) is float and type(found) is int):
        raise ConfigError(f"{where}: field {field} must be {kind(fresh)}, got {kind(found)}")
    elif isinstance(found, float) and not math.isfinite(found):
        raise ConfigError(f"{where}: field {field} is {found}, not a finite number")


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors and metadata, turning a missing or corrupt file into one clear error."""
    if not path.exists():
        raise ConfigError(f"missing checkpoint file {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()
            return {k: f.get_tensor(k) for k in names}, f.metadata() or {}
    except Exception as err:  # safetensors raises several types for truncated/corrupt files
        raise ConfigError(f"corrupt checkpoint {path}: {err}") from None


def load_checked(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file's tensors, turning a missing or corrupt file into one clear error."""
    return read_safetensors(path)[0]


def check_tensors(
    where: str, what: str, found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> None:
    """Refuse tensors that are not exactly the expected names, shapes and dtypes (weights are never cast:
    int8 weights would be silently rounded), or that hold non-finite floats (training would die of them
    updates later). One line naming the file and the first misfit."""
    for name, want in expected.items():
        if name not in found:
            raise ConfigError(f"{where} does not fit {what}: tensor {name} is missing")
        got = found[name]
        if got.dtype != want.dtype:
            raise ConfigError(
                f"{where} does not fit {what}: {name} is {str(got.dtype)[6:]}, expected "
                f"{str(want.dtype)[6:]} (weights are never cast)"
            )
        if got.shape != want.shape:
            raise ConfigError(
                f"{where} does not fit {what}: {name} has shape {tuple(got.shape)}, "
                f"expected {tuple(want.shape)}"
            )
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise ConfigError(f"{where} does not fit {what}: {name} holds NaN or infinite values")
    unexpected = sorted(found.keys() - expected.keys())
    if unexpected:
        raise ConfigError(f"{where} does not fit {what}: unexpected tensor {unexpected[0]}")


def load_weights(module: torch.nn.Module, path: Path, what: str) -> torch.nn.Module:
    """Load a module's weights from a safetensors file; a misfit is one line naming the file and `what`."""
    weights = load_checked(path)
    check_tensors(str(path), what, weights, module.state_dict())
    module.load_state_dict(weights)
    return module


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
    """An optimiser's per-parameter state as named tensors (its param_groups go to JSON)."""
    tensors = {}
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"{prefix}.{pid}.{k}"] = v.reshape(1) if v.dim() == 0 else v.contiguous()
    return tensors


def load_optimizer(
    opt: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    prefix: str,
    param_groups: list,
    device: torch.device | str,
    where: str = "checkpoint",
) -> None:
    """Restore what `optimizer_tensors` saved (Adam's step counts stay on the CPU, as torch keeps them),
    after checking it against this optimiser: its groups hold the same parameters (a setting missing
    from a saved group takes this optimiser's), and every state tensor is Adam's of one parameter, of
    its shape and dtype."""
    fresh = opt.state_dict()["param_groups"]
    check_form(where, f"{prefix} param_groups", param_groups, json.loads(json.dumps(fresh)))
    for i, (group, mine) in enumerate(zip(param_groups, fresh, strict=True)):
        if group.get("params") != mine["params"]:
            raise ConfigError(f"{where}: field {prefix} param_groups[{i}].params is not this network's")
    params = [p for group in opt.param_groups for p in group["params"]]
    saved = {k: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    expected = {}
    for key in saved:
        pid, _, name = key[len(prefix) + 1 :].partition(".")
        if pid.isdigit() and int(pid) < len(params) and name in ("step", "exp_avg", "exp_avg_sq"):
            like = params[int(pid)].detach()
            expected[key] = like.new_empty(1) if name == "step" else like
    check_tensors(where, "the optimiser", saved, expected)
    groups = [mine | group for mine, group in zip(fresh, param_groups, strict=True)]
    state: dict = {"state": {}, "param_groups": groups}
    for key, v in saved.items():
        pid, _, name = key[len(prefix) + 1 :].partition(".")
        state["state"].setdefault(int(pid), {})[name] = v.to(device) if name != "step" else v.reshape(())
    opt.load_state_dict(state)
