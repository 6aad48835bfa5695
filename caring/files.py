"""Files, safely: atomic writes (an interrupted command never leaves half a file), JSON without bare NaN
(a metric that does not exist, e.g. steps to a goal never reached, is null), reads that turn a missing
or corrupt file into one clear error, and an optimiser's state as named tensors for safetensors
checkpoints (never pickle)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from worlds.config import ConfigError


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write via a temporary file and rename, so an interrupted run never leaves half a result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


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
    """A JSON file's content, or one clear error (missing, not JSON)."""
    if not path.exists():
        raise ConfigError(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"corrupt JSON {path}: {err}") from None


def load_checked(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning a missing or corrupt file into one clear error."""
    if not path.exists():
        raise ConfigError(f"missing checkpoint file {path}")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises several types for truncated/corrupt files
        raise ConfigError(f"corrupt checkpoint {path}: {err}") from None


def load_weights(module: torch.nn.Module, path: Path, what: str) -> torch.nn.Module:
    """Load a module's weights from a safetensors file; a misfit is one line naming the file and `what`."""
    try:
        module.load_state_dict(load_checked(path))
    except RuntimeError as err:
        raise ConfigError(f"{path} does not fit {what}: {str(err).splitlines()[0]}") from None
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
) -> None:
    """Restore what `optimizer_tensors` saved (Adam's step counts stay on the CPU, as torch keeps them)."""
    state: dict = {"state": {}, "param_groups": param_groups}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, pid, name = key.split(".", 2)
            state["state"].setdefault(int(pid), {})[name] = v.to(device) if name != "step" else v.reshape(())
    opt.load_state_dict(state)
