"""Resolve a `--policy` argument to a nursery policy (scripted mothers now; trained runs later)."""

from __future__ import annotations

from caring.evaluate import Policy
from worlds.config import ConfigError
from worlds.nursery.core import NurseryCore
from worlds.nursery.scripted import SCRIPTED


def load_policy(name: str, core: NurseryCore) -> Policy:
    if name in SCRIPTED:
        return SCRIPTED[name](core)
    raise ConfigError(f"unknown policy {name!r}; valid policies: {', '.join(SCRIPTED)}")
