"""Caring's environments. `worlds.make(name, **config)` returns a PettingZoo ParallelEnv."""

from __future__ import annotations

from typing import Any

import pettingzoo

from worlds.config import ConfigError

# name -> (PettingZoo id, "module:ParallelEnv class")
WORLDS = {
    "nursery": ("caring/nursery-v0", "worlds.nursery.nursery_v0:NurseryEnv"),
    "lava": ("caring/lava-v0", "worlds.lava.lava_v0:LavaEnv"),
}

for _id, _entry in WORLDS.values():
    if _id not in pettingzoo.parallel_registry:
        pettingzoo.register("parallel", _id, entry_point=_entry)


def check_world(name: str) -> str:
    if name not in WORLDS:
        raise ConfigError(f"unknown world {name!r}; valid worlds: {', '.join(WORLDS)}")
    return name


def make(name: str, **config: Any) -> pettingzoo.ParallelEnv:
    """Build world `name` as a PettingZoo ParallelEnv; config keys are the world's parameters."""
    return pettingzoo.make("parallel", WORLDS[check_world(name)][0], **config)


__all__ = ["WORLDS", "ConfigError", "check_world", "make"]
