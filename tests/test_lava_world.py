"""The lava world: PettingZoo conformance, batched core = PettingZoo view, its rules, its layout split,
and its handling of bad input."""

import dataclasses
import types
from collections import Counter

import numpy as np
import pettingzoo
import pytest
import torch
from pettingzoo.test import api_test, max_cycles_test, parallel_api_test, parallel_seed_test, render_test

import worlds
from worlds import rng
from worlds.config import ConfigError, build_config
from worlds.lava import lava_v0
from worlds.lava.config import LavaConfig
from worlds.lava.core import (
    CHANNELS,
    DOWN,
    EVENTS,
    FLOOR,
    LAVA,
    LEFT,
    N_ACTIONS,
    QUICKSAND,
    RIGHT,
    TEST_EVERY,
    TILE_FEATURES,
    TILE_NAMES,
    UP,
    WALL,
    LavaCore,
    LavaState,
    layout_hash,
)
from worlds.lava.lava_v0 import LavaEnv
from worlds.lava.render import CELL, COLOURS, STRIP
from worlds.lava.scripted import SCRIPTED

WALKER = "walker_0"
OFFSETS = {UP: (-1, 0), RIGHT: (0, 1), DOWN: (1, 0), LEFT: (0, -1)}  # action -> (drow, dcol)


def make_core(**config) -> LavaCore:
    return LavaCore(build_config(LavaConfig, config))


def keys(n: int, first: int = 0) -> torch.Tensor:
    return rng.seed_key(torch.arange(first, first + n))


def channel(obs: torch.Tensor, core: LavaCore, name: str) -> torch.Tensor:
    """One feature channel of the view in observations (B, 1, obs_dim), as (B, V*V)."""
    cells = obs.view(obs.shape[0], core.V * core.V + 1, len(CHANNELS))
    return cells[:, : core.V * core.V, CHANNELS.index(name)]


def window_tiles(core: LavaCore, state) -> torch.Tensor:
    """(B, V*V) tile codes around each walker, outside the grid as WALL (written independently of the
    core: a numpy slice per world)."""
    r = core.config.view_radius
    grids = np.pad(state.cells.permute(2, 0, 1).numpy(), ((0, 0), (r, r), (r, r)), constant_values=WALL)
    rows = [
        g[y : y + 2 * r + 1, x : x + 2 * r + 1].reshape(-1)
        for g, (y, x) in zip(grids, state.pos.T.tolist(), strict=True)
    ]
    return torch.as_tensor(np.stack(rows))


def at(grid: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """grid (H, W, B) read at positions pos (2, ..., B) of every world -> (..., B)."""
    return grid[pos[0], pos[1], torch.arange(grid.shape[-1]).expand(pos.shape[1:])]


# ---------------------------------------------------------------- PettingZoo conformance


def test_parallel_api():
    parallel_api_test(worlds.make("lava"), num_cycles=1000)


def test_parallel_seed():
    parallel_seed_test(lambda: worlds.make("lava"), num_cycles=500)


def test_aec_api():
    api_test(lava_v0.env(), num_cycles=1000)


def test_render_modes():
    render_test(lava_v0.env)


def test_max_cycles():
    # On a 9x9 grid the goal is at least 6 steps from the start, so no walker finishes within the
    # test's 4 random steps and every episode ends by truncation.
    mod = types.SimpleNamespace(
        parallel_env=lambda **kw: lava_v0.parallel_env(height=9, width=9, **kw),
        env=lambda **kw: lava_v0.env(height=9, width=9, **kw),
    )
    max_cycles_test(mod)


def test_registered_with_pettingzoo():
    env = pettingzoo.make("parallel", "caring/lava-v0", height=11, width=13)
    obs, _ = env.reset(seed=3)
    assert env.possible_agents == [WALKER]
    view = 2 * env.config.view_radius + 1
    assert obs[WALKER].shape == ((view * view + 1) * len(CHANNELS),) == env.observation_space(WALKER).shape
    assert env.state().ndim == 1


@pytest.mark.parametrize("config, tile", [({}, LAVA), ({"quicksand": 1.0, "split": "test"}, QUICKSAND)])
def test_rgb_frames_show_the_hazard(config, tile):
    env = LavaEnv(render_mode="rgb_array", **config)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (env.core.H * CELL + STRIP, env.core.W * CELL, 3) and frame.dtype == np.uint8
    assert (frame == COLOURS[tile]).all(-1).any()
    env.close()


# ---------------------------------------------------------------- equivalence

EQUIVALENCE_CONFIGS = {"default": {}, "quicksand": {"quicksand": 1.0, "split": "test"}}


@pytest.mark.parametrize(
    "name, compiled",
    [("default", False), ("quicksand", False), ("default", True)],
    ids=["default", "quicksand", "default-compiled"],
)
def test_batched_core_equals_eight_pettingzoo_envs(name, compiled):
    """compiled: the views step the AOT-compiled core (built once, then cached; worlds.compiled)."""
    config, B, steps = EQUIVALENCE_CONFIGS[name], 8, 300
    envs = [LavaEnv(compile=compiled, **config) for _ in range(B)]
    if compiled:
        assert envs[0]._step != envs[0].core.step, "the compiled step was not used"
    core = LavaCore(envs[0].config)
    shortcut = SCRIPTED["shortcut"](core)
    seeds = [2000 + 13 * i for i in range(B)]
    state, obs = core.reset(rng.seed_key(torch.tensor(seeds)))
    env_obs = [env.reset(seed=s)[0][WALKER] for env, s in zip(envs, seeds, strict=True)]
    gen = np.random.default_rng(0)
    endings, totals = Counter(), Counter()
    for _ in range(steps):
        for b in range(B):
            np.testing.assert_array_equal(env_obs[b], obs[b, 0].numpy())
        # Random actions, a fifth of them the shortcut walker's, so episodes end at the goal and at
        # max_cycles.
        buttons = torch.as_tensor(gen.integers(0, N_ACTIONS, (B, 1)))
        actions = torch.where(torch.as_tensor(gen.random((B, 1)) < 0.8), buttons, shortcut(state, obs))
        state, out = core.step(state, actions)
        tiles = at(state.cells, state.pos).tolist()  # (B,) under each walker
        for b, env in enumerate(envs):
            o, r, term, trunc, info = env.step({WALKER: int(actions[b, 0])})
            events = {k: int(out.events[k][b, 0]) for k in EVENTS}
            assert r == {WALKER: float(out.reward[b, 0])}
            assert term == {WALKER: bool(out.terminated[b, 0])}
            assert trunc == {WALKER: bool(out.truncated[b])}
            assert info == {WALKER: {**events, "tile": TILE_NAMES[tiles[b]]}}
            np.testing.assert_array_equal(o[WALKER], out.obs[b, 0].numpy())
            env_obs[b] = o[WALKER]
            totals.update(events)
        # Episode ends: the env resets itself without a seed, the core with reset_done: same key chain.
        done = out.terminated[:, 0] | out.truncated
        endings.update(goal=int(out.terminated.sum()), max_cycles=int((done & ~out.terminated[:, 0]).sum()))
        if done.any():
            state, obs = core.reset_done(state, out.obs, done)
            for b in torch.nonzero(done).flatten().tolist():
                assert not envs[b].agents
                env_obs[b] = envs[b].reset()[0][WALKER]
        else:
            obs = out.obs
    assert endings["goal"] > 0 and endings["max_cycles"] > 0  # both kinds of episode end were crossed
    hazard = "quicksand" if name == "quicksand" else "lava"
    assert totals[hazard] > 0 and (totals["held"] > 0) == (name == "quicksand")


# ---------------------------------------------------------------- world rules


def rollout(core: LavaCore, policy: str, n: int) -> tuple[LavaState, dict[str, torch.Tensor]]:
    """One episode in each of n worlds under a scripted walker -> (start state, event totals (n,))."""
    state, obs = core.reset(keys(n))
    start, walker = state, SCRIPTED[policy](core)
    totals = {k: torch.zeros(n, dtype=torch.int64) for k in EVENTS}
    for _ in range(core.config.max_cycles):
        state, out = core.step(state, walker(state, obs))
        obs = out.obs
        for k in EVENTS:
            totals[k] += out.events[k][:, 0]
    return start, totals


def distance_from_start(core: LavaCore, start: LavaState, through_hazards: bool) -> torch.Tensor:
    """(B,) steps from each world's start to its goal."""
    return at(core.distance_to_goal(start, through_hazards), start.pos).long()


@pytest.mark.parametrize("split", ["train", "test"])
def test_expert_reaches_the_goal_by_the_shortest_safe_path(split):
    core = make_core(split=split, quicksand=0.0 if split == "train" else 0.5)  # test: both materials
    start, totals = rollout(core, "expert", 500)
    assert (totals["goal"] == 1).all()
    assert (totals["lava"] == 0).all() and (totals["quicksand"] == 0).all() and (totals["held"] == 0).all()
    assert torch.equal(totals["steps"], distance_from_start(core, start, through_hazards=False))


@pytest.mark.parametrize("split", ["train", "test"])
def test_shortcut_is_shorter_and_always_crosses_lava(split):
    core = make_core(split=split)
    start, totals = rollout(core, "shortcut", 500)
    assert (totals["goal"] == 1).all() and (totals["lava"] > 0).all()
    safe = distance_from_start(core, start, through_hazards=False)
    assert torch.equal(totals["steps"], distance_from_start(core, start, through_hazards=True))
    assert (totals["steps"] < safe).all()


def test_walls_block_moves():
    core = make_core()
    state, _ = core.reset(keys(64))
    for action, offset in OFFSETS.items():
        target = state.pos + torch.tensor(offset)[:, None]  # (2, B)
        blocked = at(state.cells, target) == WALL
        assert blocked.any() and (~blocked).any()  # the start is next to the border on one side
        moved, out = core.step(state, torch.full((64, 1), action))
        assert torch.equal(moved.pos, torch.where(blocked, state.pos, target))
        # An interior wall put in every walker's way stops every one of them.
        walled = state.cells.clone()
        walled[target[0], target[1], torch.arange(64)] = WALL
        stopped, out = core.step(dataclasses.replace(state, cells=walled), torch.full((64, 1), action))
        assert torch.equal(stopped.pos, state.pos)
        assert torch.equal(out.reward[:, 0], torch.full((64,), -core.config.step_cost))


@pytest.mark.parametrize("delay", [0, 1, 4, 7])
def test_quicksand_holds_the_walker_for_exactly_its_delay(delay):
    core, B = make_core(quicksand_delay=delay), 32
    state, _ = core.reset(keys(B))
    # Paint quicksand on the first plain floor cell next to each start, step in, then try to step back.
    offsets = torch.tensor(list(OFFSETS.values())).T  # (2, 4) in action order
    around = state.pos[:, None, :] + offsets[:, :, None]  # (2, 4, B)
    floor = at(state.cells, around) == FLOOR  # (4, B)
    assert floor.any(0).all()
    into = floor.int().argmax(0)  # (B,)
    sand = around[:, into, torch.arange(B)]  # (2, B)
    cells = state.cells.clone()
    cells[sand[0], sand[1], torch.arange(B)] = QUICKSAND
    state = dataclasses.replace(state, cells=cells)
    start = state.pos

    state, out = core.step(state, into[:, None])
    assert torch.equal(state.pos, sand) and (out.events["quicksand"] == 1).all()
    back = ((into + 2) % N_ACTIONS)[:, None]
    for _ in range(delay):
        state, out = core.step(state, back)
        assert torch.equal(state.pos, sand) and (out.events["held"] == 1).all()
        assert (out.events["quicksand"] == 0).all()
    state, out = core.step(state, back)
    assert torch.equal(state.pos, start) and (out.events["held"] == 0).all()


@pytest.mark.parametrize("penalty", [0.0, 0.5])
def test_lava_penalty_is_the_only_reward_for_lava(penalty):
    cfg, n = {"max_cycles": 20}, 64
    rewards, lava = {}, {}
    for p in (0.0, penalty):
        core = make_core(lava_penalty=p, **cfg)
        state, obs = core.reset(keys(n))
        walker, r, on_lava = SCRIPTED["shortcut"](core), [], []
        for _ in range(core.config.max_cycles):
            state, out = core.step(state, walker(state, obs))
            obs = out.obs
            r.append(out.reward[:, 0])
            on_lava.append(out.events["lava"][:, 0].bool())
        rewards[p], lava[p] = torch.stack(r), torch.stack(on_lava)  # (T, n)
    assert torch.equal(lava[0.0], lava[penalty]) and lava[0.0].any()  # the penalty changes no dynamics
    step_cost = make_core().config.step_cost
    if penalty == 0:
        assert (rewards[0.0][lava[0.0]] == -step_cost).all()  # a lava step costs what any step costs
    torch.testing.assert_close(
        rewards[penalty], rewards[0.0] - penalty * lava[0.0].float(), rtol=0, atol=1e-6
    )


def test_steps_after_the_goal_change_nothing_and_pay_nothing():
    core, n = make_core(max_cycles=60), 64
    state, obs = core.reset(keys(n))
    expert = SCRIPTED["expert"](core)
    while not state.at_goal.all():
        state, out = core.step(state, expert(state, obs))
        obs = out.obs
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        after, out = core.step(state, torch.randint(0, N_ACTIONS, (n, 1), generator=gen))
        for field in ("key", "cells", "pos", "goal", "held", "at_goal"):
            assert torch.equal(getattr(after, field), getattr(state, field)), field
        assert torch.equal(after.t, state.t + 1)
        assert torch.equal(out.obs, obs) and (out.reward == 0).all() and not out.terminated.any()
        assert all((v == 0).all() for v in out.events.values())
        state = after


# ---------------------------------------------------------------- layouts and the held-out split


def layouts(split: str, n: int = 2000, **config) -> tuple[list[int], set[tuple[bytes, int, int]]]:
    """Layout hashes and hazard-agnostic contents (the grid, quicksand as lava, and the start) of n resets."""
    core = make_core(split=split, **config)
    state, _ = core.reset(keys(n))
    hashes = layout_hash(state.cells, state.pos, state.goal).tolist()
    grids = torch.where(state.cells == QUICKSAND, LAVA, state.cells).permute(2, 0, 1).numpy()  # (n, H, W)
    starts = state.pos.T.tolist()
    return hashes, {(grids[b].tobytes(), *starts[b]) for b in range(n)}


# A 7x7 wall-free grid has only about a thousand layouts, so 2000 draws per split would collide if the
# split leaked.
LAYOUT_CONFIGS = {"default": {}, "small": {"height": 7, "width": 7, "n_walls": 0}}


@pytest.mark.parametrize("name", LAYOUT_CONFIGS)
def test_train_and_test_layouts_are_disjoint(name):
    config = LAYOUT_CONFIGS[name]
    train_hashes, train = layouts("train", **config)
    test_hashes, test = layouts("test", quicksand=1.0, **config)
    assert all(h % TEST_EVERY != 0 for h in train_hashes) and all(h % TEST_EVERY == 0 for h in test_hashes)
    assert not set(train_hashes) & set(test_hashes)
    assert not train & test
    # The material never changes which layout a seed gets, so quicksand cannot move a layout across.
    assert layouts("test", quicksand=0.0, **config)[1] == test
    if name == "small":
        _, anywhere = layouts("any", **config)
        assert anywhere & train and anywhere & test  # this comparison does see shared layouts


def test_any_split_holds_out_a_fifth():
    hashes, _ = layouts("any", n=4000)
    held_out = np.mean([h % TEST_EVERY == 0 for h in hashes])
    assert 0.15 <= held_out <= 0.25


def test_training_layouts_never_contain_quicksand():
    core, n = make_core(split="train"), 2000
    state, obs = core.reset(keys(n))
    assert not (state.cells == QUICKSAND).any() and (state.cells == LAVA).any(0).any(0).all()
    walker = SCRIPTED["random"](core)
    for _ in range(core.config.max_cycles):
        assert not channel(obs, core, "soft").any()
        state, out = core.step(state, walker(state, obs))
        obs = out.obs


def test_quicksand_looks_like_lava_only_in_its_warning():
    assert set(TILE_FEATURES[LAVA]) & set(TILE_FEATURES[QUICKSAND]) == {"warning"}
    core = make_core(split="test", quicksand=1.0)
    state, obs = core.reset(keys(64))
    assert (state.cells == QUICKSAND).any(0).any(0).all() and not (state.cells == LAVA).any()
    sand = window_tiles(core, state) == QUICKSAND  # (B, V*V)
    assert sand.any()
    assert torch.equal(channel(obs, core, "soft") > 0, sand)
    assert torch.equal(channel(obs, core, "warning") > 0, sand)
    assert not channel(obs, core, "hot").any()


def test_the_walker_sees_its_window_the_goals_direction_and_whether_it_is_held():
    core = make_core(split="test", quicksand=1.0, quicksand_delay=3)
    state, obs = core.reset(keys(256))
    expert = SCRIPTED["shortcut"](core)
    saw_held = False
    for _ in range(core.config.max_cycles):
        tiles = window_tiles(core, state)
        for name in CHANNELS:
            has = torch.tensor([[name in TILE_FEATURES[int(t)] for t in row] for row in tiles])
            assert torch.equal(channel(obs, core, name) > 0, has)
        extra = obs.view(obs.shape[0], -1, len(CHANNELS))[:, -1].long()  # (B, C): goal_dy, goal_dx, held
        scale = 127 // max(core.H, core.W)
        assert torch.equal(extra[:, 0], (state.goal[0] - state.pos[0]) * scale + 128)
        assert torch.equal(extra[:, 1], (state.goal[1] - state.pos[1]) * scale + 128)
        assert torch.equal(extra[:, 2] > 0, state.held > 0)
        saw_held |= bool((state.held > 0).any())
        state, out = core.step(state, expert(state, obs))
        obs = out.obs
    assert saw_held


# ---------------------------------------------------------------- bad input

CONFIG_CASES = {
    "unknown key": ({"wingspan": 2}, "unknown LavaConfig key 'wingspan'"),
    "out of range": ({"quicksand": 1.5}, r"quicksand=1.5 is out of range \[0.0, 1.0\]"),
    "bad split": ({"split": "validation"}, "split: 'validation' is not one of train, test, any"),
    "wrong type": ({"max_cycles": "long"}, "max_cycles: expected int"),
    "too many walls": ({"height": 7, "width": 7, "n_walls": 20}, "n_walls=20 is too many"),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_bad_configs_raise_one_line(case):
    config, message = CONFIG_CASES[case]
    with pytest.raises(ConfigError, match=message) as err:
        worlds.make("lava", **config)
    assert "\n" not in str(err.value)


def test_bad_render_mode():
    with pytest.raises(ValueError, match="render_mode 'ascii'"):
        LavaEnv(render_mode="ascii")


@pytest.mark.parametrize(
    "action, message",
    [
        (4, r"must be in \[0, 4\)"),
        (-1, r"must be in \[0, 4\)"),
        (2.0, "must be an int"),
        ("up", "must be an int"),
        (np.array([1, 2]), "must be an int"),
        (True, "must be an int"),
    ],
)
def test_step_rejects_bad_actions(action, message):
    env = LavaEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step({WALKER: action})


def test_step_rejects_unknown_agents_and_step_before_reset():
    env = LavaEnv()
    with pytest.raises(ValueError, match="call reset"):
        env.step({WALKER: 0})
    with pytest.raises(ValueError, match="call reset"):
        env.state()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="unknown agent 'runner_0'"):
        env.step({"runner_0": 0})
    assert env.step({WALKER: np.int64(3)})[0]  # numpy ints are fine


def test_lava_walkers_evaluated_side_by_side_equal_each_alone():
    """The lava task's evaluate_each: each walker's evaluation is the one it gets alone, whether it
    shares a run with another walker or its episodes fill several runs."""
    from caring.tasks import get_task
    from worlds.lava.config import LavaConfig
    from worlds.lava.core import LavaCore

    task, core = get_task("lava"), LavaCore(LavaConfig(quicksand=0.5))
    walkers = [task.scripted[name](core) for name in ("expert", "shortcut", "random")]
    alone = [task.evaluate(core, walker, 50, seed=3) for walker in walkers]
    assert len({r["lava_contacts_per_episode"] for r in alone}) == 3  # three different walkers
    assert task.evaluate_each(core, walkers, 50, seed=3) == alone  # all three in one run
    assert task.evaluate_each(core, walkers, 50, seed=3, batch=20) == alone  # runs of 20, 20, 10
