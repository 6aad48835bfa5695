"""Lava: reach the goal past a hazard pool that every shortest path crosses (seed 000 §6.2)."""

from worlds.lava.config import LavaConfig
from worlds.lava.core import LavaCore, LavaState

__all__ = ["LavaConfig", "LavaCore", "LavaState"]
