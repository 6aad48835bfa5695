"""Typed, range-checked world configs shared by every world.

A world declares its parameters once as a frozen dataclass whose fields carry `param(...)` metadata
(range, allowed choices, one-line meaning). From that one declaration come: defaults, validation with
a single clear error line, `--set key=value` parsing, and config files (JSON or TOML). A world may
name presets (`presets`, and a `preset` field that records which one a config was built from).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import tomllib
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """Bad configuration: the message is one line that names the valid choices."""


def param(
    default: Any,
    help: str,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A config field with its valid range (inclusive) or choices and a one-line meaning."""
    return dataclasses.field(default=default, metadata={"help": help, "lo": lo, "hi": hi, "choices": choices})


def _field_type(field: dataclasses.Field) -> type:
    return {"int": int, "float": float, "bool": bool, "str": str}[str(field.type)]


def _coerce(name: str, kind: type, value: Any) -> Any:
    """Convert a value from a CLI string or a config file to the field's type, strictly."""
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if kind is bool:
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        try:
            return int(text) if kind is int else float(text)
        except ValueError:
            raise ConfigError(f"{name}: expected {kind.__name__}, got {value!r}") from None
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{name}: expected int, got {value!r}")
    if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(f"{name}: expected float, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    if kind is float and isinstance(value, int) and abs(value) > sys.float_info.max:
        raise ConfigError(f"{name}: an integer of {len(str(abs(value)))} digits is too large for a float")
    return float(value) if kind is float else value


def validate_fields(config: Any) -> None:
    """Check every field against its declared range or choices, and every float for being finite (NaN
    passes every range check, and then poisons a world or a training run long after)."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        meta = field.metadata
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{field.name}={value} is not a finite number")
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"{field.name}: {value!r} is not one of {', '.join(meta['choices'])}")
        lo, hi = meta.get("lo"), meta.get("hi")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(f"{field.name}={value} is out of range [{lo}, {hi}]")


def build_config(cls: type[C], overrides: dict[str, Any] | None = None) -> C:
    """Make a config of type `cls` from overrides (strings or typed values), validated. A world with
    named presets (`cls.presets`) puts the settings of the `preset` the overrides name under them."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for name, value in with_preset(cls, {}, overrides or {}).items():
        if name not in fields:
            raise ConfigError(f"unknown {cls.__name__} key {name!r}; valid keys: {', '.join(fields)}")
        values[name] = _coerce(name, _field_type(fields[name]), value)
    config = cls(**values)
    validate = getattr(config, "validate", None)
    (validate or (lambda: validate_fields(config)))()
    return config


def with_preset(cls: type, base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` (e.g. a trained mother's own world), then the settings of the preset `overrides` name (if
    any), then `overrides`: a preset changes a whole world, yet whatever is set explicitly wins."""
    if "preset" not in overrides:
        return {**base, **overrides}
    presets = getattr(cls, "presets", {})
    name = overrides["preset"]
    if name not in presets:
        raise ConfigError(
            f"unknown preset {name!r}; valid presets: {', '.join(presets) or 'none in this world'}"
        )
    return {**base, **presets[name], **overrides}


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """Parse repeated `--set key=value` strings into a dict (later wins)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read overrides from a .json or .toml file (a flat table of world parameters)."""
    path = Path(path)
    if path.suffix not in (".json", ".toml"):
        raise ConfigError(f"config file {path} must end in .json or .toml")
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not text: byte {err.start} is not UTF-8") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of key = value pairs")
    return data


def describe(cls: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, meaning with range) for every field, for `--help` and the README."""
    rows = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        span = (
            f"; one of {'/'.join(meta['choices'])}"
            if meta.get("choices")
            else f" [{meta.get('lo')}, {meta.get('hi')}]"
            if meta.get("lo") is not None
            else ""
        )
        rows.append((f.name, str(f.type), f.default, meta.get("help", "") + span))
    return rows
