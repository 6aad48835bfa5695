"""The batched core and the PettingZoo view are one source of truth: same seeds + same actions give
identical observations, rewards, terminations and infos, across episode boundaries (the view's
prefetched resets and its compiled step included)."""

import os

import numpy as np
import pytest
import torch

from worlds import rng
from worlds.nursery.core import EVENTS, N_ACTIONS, NurseryCore
from worlds.nursery.nursery_v0 import NurseryEnv, _info

CONFIGS = {
    "default": {},
    "busy": {
        "births_per_life": 3,
        "rebirth_delay": 3,
        "birth_step": 2,
        "n_predators": 3,
        "n_mothers": 3,
        "grow_age": 30,
        "max_cycles": 120,
        "baby_markers": "swapped",
        "predator_speed": 0.9,
    },
    "scheduled": {"births_per_life": 4, "birth_interval": 25, "birth_step": 2, "max_cycles": 120},
    "selective": {"preset": "selective", "births_per_life": 2, "max_cycles": 120},  # orphans: no agents
}


def compiled_step_built(config: dict) -> bool:
    """Whether this machine has built the nursery's compiled step for `config` already."""
    from worlds.compiled import _key, cache_dir

    core = NurseryCore(NurseryEnv(**config).config)
    return (cache_dir() / f"NurseryCore-{_key(core)}.pt2").exists()


SLOW = pytest.mark.skipif(
    not (os.environ.get("CARING_SLOW_TESTS") or compiled_step_built(CONFIGS["default"])),
    reason="building the nursery's compiled step takes about two minutes on 2 cores: CARING_SLOW_TESTS=1 "
    "builds and tests it (lava's compiled step is tested every run, tests/test_lava_world.py)",
)


@pytest.mark.parametrize(
    "name, compiled",
    [
        ("default", False),
        ("busy", False),
        ("scheduled", False),
        ("selective", False),
        pytest.param("default", True, marks=SLOW),
    ],
    ids=["default", "busy", "scheduled", "selective", "default-compiled"],
)
def test_batched_core_equals_pettingzoo_envs(name, compiled):
    """compiled: the views step the AOT-compiled core (worlds.compiled; the first run builds it, about
    a minute and a half, then it is cached) and must still equal the eager batched core bit for bit.
    Eight worlds in the busiest config, four in the others (each view steps its own B=1 core, about
    40 seconds per eight worlds on this project's CPU)."""
    config, B, steps = CONFIGS[name], 8 if name == "busy" else 4, 300
    envs = [NurseryEnv(compile=compiled, **config) for _ in range(B)]
    if compiled:
        assert envs[0]._step != envs[0].core.step, "the compiled step was not used"
    core = NurseryCore(envs[0].config)
    seeds = [1000 + 17 * i for i in range(B)]
    state, obs = core.reset(rng.seed_key(torch.tensor(seeds)))
    env_obs = [env.reset(seed=s)[0] for env, s in zip(envs, seeds, strict=True)]
    agents = envs[0].possible_agents
    gen = np.random.default_rng(0)
    checked, resets = 0, torch.zeros(B, dtype=torch.long)
    for _ in range(steps):
        for b, env in enumerate(envs):
            for a in env.agents:
                np.testing.assert_array_equal(env_obs[b][a], obs[b, agents.index(a)].numpy())
        actions = gen.integers(0, N_ACTIONS, size=(B, core.A))
        state, out = core.step(state, torch.as_tensor(actions))
        events = torch.stack([out.events[k] for k in EVENTS], -1).tolist()  # (B, A, n_events)
        for b, env in enumerate(envs):
            live = list(env.agents)
            o, r, term, trunc, info = env.step({a: int(actions[b, agents.index(a)]) for a in live})
            for a in live:
                i = agents.index(a)
                assert r[a] == pytest.approx(float(out.reward[b, i]), abs=0)
                assert term[a] == bool(out.terminated[b, i])
                assert trunc[a] == bool(out.truncated[b])
                assert info[a] == _info([list(col) for col in zip(*events[b], strict=True)], i)
                np.testing.assert_array_equal(o[a], out.obs[b, i].numpy())
                checked += 1
            env_obs[b] = o
        # Episode ends: the env resets itself without a seed, the core with reset_done: same key chain.
        done = out.truncated | ~state.mother_alive.any(0)
        if done.any():
            resets += done.long()
            state, obs = core.reset_done(state, out.obs, done)
            for b in torch.nonzero(done).flatten().tolist():
                assert not envs[b].agents
                env_obs[b] = envs[b].reset()[0]
        else:
            obs = out.obs
    assert checked > B * core.M * steps // 2  # most agent-steps were compared (the rest were dead)
    assert (resets >= (1 if name == "default" else 2)).all()  # across episode ends (the default's: 200 steps)


def test_a_compiled_step_that_cannot_be_built_falls_back_to_the_eager_step(monkeypatch, tmp_path):
    monkeypatch.setenv("CARING_CACHE_DIR", str(tmp_path))  # nothing cached there

    def no_toolchain(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch.export, "export", no_toolchain)
    with pytest.warns(UserWarning, match="stepping eagerly"):
        env = NurseryEnv(compile=True, max_cycles=30)
    assert env._step == env.core.step
    eager = NurseryEnv(max_cycles=30)
    for e in (env, eager):
        e.reset(seed=4)
    for _ in range(30):
        actions = dict.fromkeys(eager.agents, 5)
        (obs, *rest), (eager_obs, *eager_rest) = env.step(actions), eager.step(actions)
        assert rest == eager_rest and obs.keys() == eager_obs.keys()
        for a in obs:
            np.testing.assert_array_equal(obs[a], eager_obs[a])


def test_compiled_steps_are_cached_per_config_and_source():
    from worlds.compiled import _key

    key = _key(NurseryCore(NurseryEnv().config))
    assert key == _key(NurseryCore(NurseryEnv().config))
    assert key != _key(NurseryCore(NurseryEnv(n_predators=2).config))
