"""PettingZoo's own conformance tests on the nursery (parallel and, through parallel_to_aec, AEC)."""

import types

import pettingzoo
import pytest
from pettingzoo.test import api_test, max_cycles_test, parallel_api_test, parallel_seed_test, render_test

import worlds
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
