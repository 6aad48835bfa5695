"""The training task of each world (`caring.protocols.Task`): what training, the maternal model and
evaluation need to know about its rules. One file per world, registered here."""

from __future__ import annotations

from typing import Any

from caring.protocols import Task
from caring.tasks.lava import LavaTask
from caring.tasks.nursery import NurseryTask
from worlds import WORLDS, check_world
from worlds.config import ConfigError

TASKS: dict[str, type] = {"nursery": NurseryTask, "lava": LavaTask}


def get_task(world: str) -> Task:
    """The task of a world name (unknown names get worlds' one-line error)."""
    check_world(world)
    if world not in TASKS:
        raise ConfigError(f"the {world} world has no training task yet; trainable worlds: {', '.join(TASKS)}")
    return TASKS[world]()


def task_of(config: Any) -> Task:
    """The task of a world config instance (NurseryConfig, LavaConfig, ...)."""
    for name in WORLDS:
        task = get_task(name)
        if isinstance(config, task.config_class):
            return task
    raise TypeError(f"{type(config).__name__} is not the config of any world")
