"""A Stable-Baselines3 `VecEnv` over `worlds.make_vec`: `SB3VecWorld("nursery", num_envs=N)` trains with
`PPO("MlpPolicy", env)` at the batched core's speed. Install with `pip install caring[sb3]`.

Why a separate adapter: SB3 predates Gymnasium's vector API and wants its own conventions (same-step
autoreset with `infos[i]["terminal_observation"]`, `TimeLimit.truncated`, one info dict per env). The
Gymnasium vector env already resets on the same step, so this only reshapes its outputs; the
conventions of `worlds.vector` (one env per agent, inactive agents, seeding) hold unchanged. Per-step
events stay out of SB3's per-env dicts (18 keys x thousands of envs per step would cost more than the
step); they are in `last_infos`, the vector env's infos of the latest step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("worlds.sb3 needs Stable-Baselines3: pip install 'caring[sb3]'") from error

from worlds.vector import VectorWorld


class SB3VecWorld(VecEnv):
    """`num_envs` agents of world `name` as an SB3 VecEnv; keyword arguments go to `worlds.make_vec`."""

    def __init__(self, name: str, num_envs: int, **kwargs: Any):
        self.venv = VectorWorld(name, num_envs, **kwargs)
        self.render_mode = None
        self.last_infos: dict[str, Any] = {}
        self._actions: np.ndarray | None = None
        super().__init__(num_envs, self.venv.single_observation_space, self.venv.single_action_space)

    def reset(self) -> np.ndarray:
        """All worlds restart: with the seed of the latest `seed()` call (SB3 gives env i seed + i;
        the worlds are keyed by env 0's), or each world's next episode."""
        obs, _ = self.venv.reset(seed=self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise ValueError("step_async() must come before step_wait()")
        obs, reward, terminated, truncated, infos = self.venv.step(self._actions)
        self._actions, self.last_infos = None, infos
        dones = terminated | truncated
        env_infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        final_obs = infos["final_obs"]
        for i in np.flatnonzero(dones):
            env_infos[i]["terminal_observation"] = final_obs[i]
            env_infos[i]["TimeLimit.truncated"] = bool(truncated[i])
        return obs, reward, dones, env_infos

    def close(self) -> None:
        self.venv.close()

    # The envs share one batched env: attributes and methods are the vector env's, for every index.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self if attr_name == "render_mode" else self.venv, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]
