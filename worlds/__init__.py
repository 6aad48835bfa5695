"""Caring's environments. `worlds.make(name, **config)` returns a PettingZoo ParallelEnv (one world);
`worlds.make_vec(name, num_envs=N, **config)` a Gymnasium vector env with one env per agent of N // A
batched worlds (see worlds.vector)."""

from __future__ import annotations

from typing import Any

import gymnasium
import pettingzoo

from worlds.config import ConfigError

# name -> (PettingZoo id, "module:ParallelEnv class")
WORLDS = {
    "nursery": ("caring/nursery-v0", "worlds.nursery.nursery_v0:NurseryEnv"),
    "lava": ("caring/lava-v0", "worlds.lava.lava_v0:LavaEnv"),
}


def check_world(name: str) -> str:
    if name not in WORLDS:
        raise ConfigError(f"unknown world {name!r}; valid worlds: {', '.join(WORLDS)}")
    return name


def make(name: str, **config: Any) -> pettingzoo.ParallelEnv:
    """Build world `name` as a PettingZoo ParallelEnv; config keys are the world's parameters."""
    return pettingzoo.make("parallel", WORLDS[check_world(name)][0], **config)


def make_vec(
    name: str, num_envs: int, obs_dtype: str = "uint8", device: str = "cpu", **config: Any
) -> gymnasium.vector.VectorEnv:
    """A Gymnasium vector env of `num_envs` agents (num_envs // agents-per-world worlds) over world
    `name`'s batched core; observations uint8, or float32 (unscaled) with obs_dtype="float32". The same
    as `gymnasium.make_vec("caring/NAME-v0", num_envs=N)` (worlds.vector.VectorWorld)."""
    world_id = WORLDS[check_world(name)][0]
    return gymnasium.make_vec(world_id, num_envs=num_envs, obs_dtype=obs_dtype, device=device, **config)


for _name, (_id, _entry) in WORLDS.items():
    if _id not in pettingzoo.parallel_registry:
        pettingzoo.register("parallel", _id, entry_point=_entry)
    if _id not in gymnasium.registry:  # entry points by name, as PettingZoo's: imported when first made
        gymnasium.register(_id, vector_entry_point="worlds.vector:VectorWorld", kwargs={"name": _name})

__all__ = ["WORLDS", "ConfigError", "check_world", "make", "make_vec"]
