"""`worlds.make_vec`: the Gymnasium vector env over a batched core equals the core stepped directly (same
keys and actions -> same observations, rewards, ends and events, across autoresets), keeps its
conventions (one env per agent, same-step autoreset, inactive agents, seeding), and the SB3 adapter
trains."""

import importlib.util

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import worlds
from worlds import rng
from worlds.config import ConfigError

BUSY_NURSERY = {  # three mothers who die often and at different times, short episodes
    "n_mothers": 3,
    "energy_start": 12,
    "n_hazards": 14,
    "max_cycles": 40,
    "birth_step": 2,
    "n_predators": 2,
}
CASES = {
    "nursery": ("nursery", BUSY_NURSERY),
    "nursery-orphans": ("nursery", BUSY_NURSERY | {"orphans": 2, "n_mothers": 2}),  # orphans: no agents
    "lava": ("lava", {"max_cycles": 30}),
}


def core_ended(name: str, after, out) -> torch.Tensor:
    """(B,) worlds whose episode is over, as the trainers decide it (caring.tasks' `ended`)."""
    if name == "nursery":
        return out.truncated | ~after.mother_alive.any(0)
    return out.truncated | after.at_goal


@pytest.mark.parametrize("case", CASES)
def test_vector_env_equals_the_core_across_autoresets(case):
    name, params = CASES[case]
    env = worlds.make_vec(name, num_envs=12 if name == "nursery" else 8, **params)
    core, W, A = env.core, env.num_worlds, env.agents_per_world
    assert params.get("n_mothers", 1) == A

    def agents(x: torch.Tensor) -> torch.Tensor:  # the core's (W, slots, ...) -> the agents' (W, A, ...)
        return x[:, :A]

    obs, info = env.reset(seed=7)
    state, core_obs = core.reset(rng.episode_keys(7, W))
    assert info == {}
    np.testing.assert_array_equal(obs, agents(core_obs).reshape(W * A, -1).numpy())
    inactive = torch.zeros(W, A, dtype=torch.bool)
    gen = np.random.default_rng(0)
    resets = terminated_seen = inactive_steps = 0
    for _ in range(150):
        actions = gen.integers(0, env.single_action_space.n, size=W * A)
        obs, reward, terminated, truncated, info = env.step(actions)
        padded = torch.zeros(W, core.A, dtype=torch.int64)
        padded[:, :A] = torch.as_tensor(actions).view(W, A)
        state, out = core.step(state, padded)
        term = agents(out.terminated) & ~inactive
        trunc = out.truncated[:, None] & ~inactive & ~term
        np.testing.assert_array_equal(reward, agents(out.reward).reshape(-1).numpy())
        np.testing.assert_array_equal(terminated, term.reshape(-1).numpy())
        np.testing.assert_array_equal(truncated, trunc.reshape(-1).numpy())
        np.testing.assert_array_equal(info["inactive"], inactive.reshape(-1).numpy())
        for k, v in out.events.items():
            np.testing.assert_array_equal(info[k], agents(v).reshape(-1).numpy())
        done = (term | trunc).reshape(-1).numpy()
        np.testing.assert_array_equal(info["_final_obs"], done)
        final = agents(out.obs).reshape(W * A, -1).numpy()
        for i in range(W * A):
            if done[i]:
                np.testing.assert_array_equal(info["final_obs"][i], final[i])
            else:
                assert info["final_obs"][i] is None
        # Inactive agents: zero observation, zero reward, no second done.
        was = inactive.reshape(-1).numpy()
        assert not (terminated[was] | truncated[was]).any()
        assert (reward[was] == 0).all() and (final[was] == 0).all()
        inactive_steps += int(was.sum())
        terminated_seen += int(terminated.sum())
        ended = core_ended(name, state, out)
        inactive = (inactive | term) & ~ended[:, None]
        if ended.any():
            resets += int(ended.sum())
            state, core_obs = core.reset_done(state, out.obs, ended)
        else:
            core_obs = out.obs
        np.testing.assert_array_equal(obs, agents(core_obs).reshape(W * A, -1).numpy())
    assert resets >= W and terminated_seen > 0  # episodes ended both ways and worlds were reset
    if name == "nursery":
        assert inactive_steps > 0  # some mother waited for her world while another lived


def test_step_tensors_is_step_without_numpy():
    a, b = (worlds.make_vec("nursery", num_envs=8) for _ in range(2))
    obs_a, _ = a.reset(seed=3)
    obs_b, _ = b.reset_tensors(seed=3)
    np.testing.assert_array_equal(obs_a, obs_b.numpy())
    gen = np.random.default_rng(1)
    for _ in range(60):
        actions = gen.integers(0, 9, size=8)
        o, r, te, tr, info = a.step(actions)
        ot, rt, tet, trt, infot = b.step_tensors(torch.as_tensor(actions))
        for x, y in ((o, ot), (r, rt), (te, tet), (tr, trt), (info["baby_alive"], infot["baby_alive"])):
            assert isinstance(y, torch.Tensor)
            np.testing.assert_array_equal(x, y.numpy())


def test_spaces_dtypes_and_metadata():
    env = worlds.make_vec("nursery", num_envs=6)
    assert env.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert (env.num_envs, env.num_worlds, env.agents_per_world) == (6, 3, 2)
    assert env.single_observation_space == gymnasium.spaces.Box(0, 255, (env.core.obs_dim,), np.uint8)
    assert env.single_action_space == gymnasium.spaces.Discrete(9)
    assert env.observation_space.shape == (6, env.core.obs_dim)
    assert env.action_space == gymnasium.spaces.MultiDiscrete([9] * 6)
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.dtype == np.uint8 and reward.dtype == np.float32 and reward.shape == (6,)
    assert terminated.dtype == truncated.dtype == np.bool_

    floats = worlds.make_vec("nursery", num_envs=6, obs_dtype="float32")
    assert floats.single_observation_space.dtype == np.float32
    float_obs, _ = floats.reset(seed=0)
    first, _ = env.reset(seed=0)
    assert float_obs.dtype == np.float32 and float_obs in floats.observation_space
    np.testing.assert_array_equal(float_obs, first.astype(np.float32))  # raw values, not scaled

    lava = worlds.make_vec("lava", num_envs=5)
    assert (lava.num_worlds, lava.single_action_space.n) == (5, 4)


def test_registered_with_gymnasium():
    env = gymnasium.make_vec("caring/lava-v0", num_envs=3, max_cycles=20)
    assert env.num_envs == 3 and env.config.max_cycles == 20
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(obs, worlds.make_vec("lava", num_envs=3).reset(seed=1)[0])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: worlds.make_vec("nursery", num_envs=5), "not a multiple of the 2 agents"),
        (lambda: worlds.make_vec("nursery", num_envs=0), "positive multiple"),
        (lambda: worlds.make_vec("jungle", num_envs=4), "unknown world"),
        (lambda: worlds.make_vec("lava", num_envs=4, obs_dtype="int8"), "obs_dtype must be one of"),
        (lambda: worlds.make_vec("lava", num_envs=4, wingspan=3), "unknown LavaConfig key"),
    ],
)
def test_bad_construction_raises_one_line(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_bad_actions_and_step_before_reset():
    env = worlds.make_vec("nursery", num_envs=4)
    with pytest.raises(ValueError, match="reset"):
        env.step(np.zeros(4, dtype=np.int64))
    env.reset(seed=0)
    for bad, message in [
        (np.zeros(3, dtype=np.int64), "shape"),
        (np.zeros(4, dtype=np.float32), "integer"),
        (np.full(4, 9), r"in \[0, 9\)"),
        (np.full(4, -1), r"in \[0, 9\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            env.step(bad)
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=[1, 2])


def test_seeding_is_deterministic_and_unseeded_resets_move_to_the_next_keys():
    def rollout(env, seed):
        out = [env.reset(seed=seed)[0]]
        gen = np.random.default_rng(5)
        for _ in range(50):
            out.append(env.step(gen.integers(0, 9, size=env.num_envs))[0])
        return np.stack(out)

    env = worlds.make_vec("nursery", num_envs=9, **BUSY_NURSERY)
    np.testing.assert_array_equal(rollout(env, 11), rollout(env, 11))
    assert not np.array_equal(rollout(env, 11), rollout(env, 12))
    env.reset(seed=11)
    keys = env.state.key.clone()
    env.reset()
    assert torch.equal(env.state.key, rng.next_key(keys))


def test_each_index_is_a_valid_env_through_a_whole_episode_and_beyond():
    """Random play in a world where mothers die: every done index carries on with a fresh episode, no
    index is ever done twice without a new episode in between."""
    env = worlds.make_vec("nursery", num_envs=30, **BUSY_NURSERY)
    env.reset(seed=2)
    gen = np.random.default_rng(2)
    length = np.zeros(env.num_envs, dtype=int)
    for _ in range(200):
        obs, _, terminated, truncated, info = env.step(gen.integers(0, 9, size=env.num_envs))
        length += 1
        assert obs.shape == (30, env.core.obs_dim)
        done = terminated | truncated
        assert (length[done] <= 2 * BUSY_NURSERY["max_cycles"]).all()
        length[done] = 0
        assert not (done & info["inactive"]).any()


def test_sb3_vecenv_api_and_conventions():
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.vec_env import VecEnv

    from worlds.sb3 import SB3VecWorld

    params = {**BUSY_NURSERY, "max_cycles": 10}  # some mothers drown, the others see the time limit
    env = SB3VecWorld("nursery", num_envs=12, **params)
    assert isinstance(env, VecEnv) and env.num_envs == 12
    assert env.observation_space == env.venv.single_observation_space
    env.seed(4)
    obs = env.reset()
    np.testing.assert_array_equal(obs, worlds.make_vec("nursery", num_envs=12, **params).reset(seed=4)[0])
    gen = np.random.default_rng(0)
    truncations = terminations = 0
    for _ in range(90):
        obs, reward, dones, infos = env.step(gen.integers(0, 9, size=12))
        assert obs.shape == (12, env.venv.core.obs_dim) and reward.shape == dones.shape == (12,)
        assert len(infos) == 12
        for i in np.flatnonzero(dones):
            np.testing.assert_array_equal(infos[i]["terminal_observation"], env.last_infos["final_obs"][i])
            truncations += infos[i]["TimeLimit.truncated"]
            terminations += not infos[i]["TimeLimit.truncated"]
        for i in np.flatnonzero(~dones):
            assert infos[i] == {}
    assert truncations > 0 and terminations > 0
    assert env.get_attr("num_worlds") == [4] * 12 and env.env_is_wrapped(object) == [False] * 12


def test_sb3_ppo_trains_on_the_vector_env():
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    from worlds.sb3 import SB3VecWorld

    env = VecMonitor(SB3VecWorld("lava", num_envs=32, max_cycles=25))
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=512, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=4096)
    assert model.num_timesteps == 4096
    assert model.rollout_buffer.observations.shape == (64 * 32, env.observation_space.shape[0])  # flattened
    episodes = list(model.ep_info_buffer)
    assert episodes, "VecMonitor saw no finished episode"
    for ep in episodes:
        assert 1 <= ep["l"] <= 25
        assert -0.01 * 25 - 1e-6 <= ep["r"] <= 1.0  # step costs, at most one goal


def test_bench_sb3_reports_both_roads_or_says_what_is_missing(capsys):
    import json

    from analysis.cli import main

    if importlib.util.find_spec("stable_baselines3") is None:
        assert main(["bench", "--world", "lava", "--sb3"]) == 2
        assert "pip install -e '.[sb3]'" in capsys.readouterr().err
        return
    args = [
        "bench",
        "--world",
        "lava",
        "--set",
        "max_cycles=25",
        "--sb3",
        "--sb3-envs",
        "4",
        "--sb3-steps",
        "1024",
    ]
    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    expected = {"vector"} | ({"supersuit"} if importlib.util.find_spec("supersuit") else set())
    assert {r["env"] for r in rows} == expected
    assert all(r["timesteps"] >= 1024 and r["agent_steps_per_s"] > 0 for r in rows)
    assert main(["bench", "--sb3", "--sb3-envs", "1"]) == 2  # one line, not a traceback
    assert "--sb3-envs must be at least 2" in capsys.readouterr().err
