"""PettingZoo's own conformance tests on the nursery (parallel and, through parallel_to_aec, AEC), and
float32 observations for frameworks that want them (RLlib)."""

import types

import numpy as np
import pettingzoo
import pytest
from gymnasium.spaces import Box
from pettingzoo.test import api_test, max_cycles_test, parallel_api_test, parallel_seed_test, render_test

import worlds
from worlds.config import ConfigError
from worlds.nursery import nursery_v0 as nursery_env


def test_parallel_api():
    parallel_api_test(worlds.make("nursery"), num_cycles=1000)


def test_parallel_seed():
    parallel_seed_test(lambda: worlds.make("nursery"), num_cycles=500)


def test_aec_api():
    api_test(nursery_env.env(), num_cycles=1000)


def test_render_modes():
    render_test(nursery_env.env)


def test_max_cycles():
    # A hazard-free layout so that no mother can drown within max_cycles_test's 4 random steps.
    mod = types.SimpleNamespace(
        parallel_env=lambda **kw: nursery_env.parallel_env(n_hazards=0, **kw),
        env=lambda **kw: nursery_env.env(n_hazards=0, **kw),
    )
    max_cycles_test(mod)


def test_registered_with_pettingzoo():
    env = pettingzoo.make("parallel", "caring/nursery-v0", n_mothers=3)
    assert env.possible_agents == ["mother_0", "mother_1", "mother_2"]


@pytest.mark.parametrize("n_mothers", [1, 3])
def test_api_other_sizes(n_mothers):
    parallel_api_test(
        worlds.make("nursery", n_mothers=n_mothers, height=9, width=9, n_walls=2, n_food=4, n_hazards=4),
        num_cycles=300,
    )


@pytest.mark.parametrize("name", ["nursery", "lava"])
def test_float32_observations_are_the_uint8_values_cast(name):
    floats, ints = worlds.make(name, obs_dtype="float32"), worlds.make(name)
    agent = floats.possible_agents[0]
    assert floats.observation_space(agent) == Box(0, 255, ints.observation_space(agent).shape, np.float32)
    parallel_api_test(floats, num_cycles=100)  # observations are in (and of the dtype of) the space
    obs, _ = floats.reset(seed=3)
    int_obs, _ = ints.reset(seed=3)
    for _ in range(20):
        for a in obs:
            assert obs[a].dtype == np.float32
            np.testing.assert_array_equal(obs[a], int_obs[a].astype(np.float32))
        if not ints.agents:
            break
        actions = dict.fromkeys(ints.agents, 1)
        obs, int_obs = floats.step(actions)[0], ints.step(actions)[0]


def test_bad_obs_dtype_raises_one_line():
    with pytest.raises(ConfigError, match="obs_dtype must be one of uint8, float32"):
        worlds.make("nursery", obs_dtype="float16")


def test_rllib_parallel_pettingzoo_env_steps_float32_observations(tmp_path, monkeypatch):
    """RLlib feeds observations straight into float layers; with obs_dtype="float32" its PettingZoo
    wrapper steps the nursery. Skipped without ray[rllib] (an optional extra: it pins other packages)."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # Ray writes under /tmp/ray and ~/.ray otherwise
    monkeypatch.setenv("HOME", str(tmp_path))
    try:
        from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
    except Exception as error:  # not installed, or installed without rllib's own dependencies
        pytest.skip(f"ray[rllib] is not importable: {error}")
    env = ParallelPettingZooEnv(worlds.make("nursery", obs_dtype="float32"))
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"mother_0", "mother_1"} and all(o.dtype == np.float32 for o in obs.values())
    steps = 0
    while steps < 300:
        actions = {agent: env.action_space[agent].sample() for agent in obs}
        obs, _, terminateds, truncateds, _ = env.step(actions)
        steps += 1
        assert all(o.dtype == np.float32 and o in env.observation_space[a] for a, o in obs.items())
        if terminateds["__all__"] or truncateds["__all__"]:
            obs, _ = env.reset()
    assert steps == 300
