"""Writing results safely: atomic writes (an interrupted command never leaves half a file) and JSON
without bare NaN (a metric that does not exist, e.g. steps to a goal never reached, is null)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


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
