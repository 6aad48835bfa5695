"""The nursery: mothers, weak babies that must be fed, guarded and kept out of danger."""

from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import NurseryCore, NurseryState
from worlds.nursery.nursery_v0 import NurseryEnv

__all__ = ["NurseryConfig", "NurseryCore", "NurseryEnv", "NurseryState"]
