"""The nursery: mothers, weak babies that must be fed, guarded and kept out of danger."""

from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import NurseryCore, NurseryState
from worlds.nursery.env import NurseryEnv, env, parallel_env

__all__ = ["NurseryConfig", "NurseryCore", "NurseryEnv", "NurseryState", "env", "parallel_env"]
