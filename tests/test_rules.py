"""Each rule of the nursery, checked on a hand-built situation (worlds.nursery.scenario)."""

import itertools

import numpy as np
import pytest
import torch

from worlds import rng
from worlds.config import build_config
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import (
    CARRY,
    DOWN,
    EAT,
    FEED,
    HAZARD,
    NOVEL_MARKERS,
    ON,
    RIGHT,
    SCALARS,
    SHOO,
    STAY,
    TRAIN_MARKERS,
    UP,
    VIEW_CHANNELS,
    NurseryCore,
)
from worlds.nursery.scenario import scenario


def make_core(**overrides):
    base = {"n_mothers": 1, "n_predators": 0, "n_hazards": 0, "height": 9, "width": 9}
    return NurseryCore(build_config(NurseryConfig, {**base, **overrides}))


def yx(pos, slot=0, world=0):
    """(row, col) of one entity from a batch-last position tensor (2, E, B)."""
    return tuple(pos[:, slot, world].tolist())


def run(core, state, *actions):
    out = None
    for a in actions:
        state, out = core.step(state, torch.tensor([[a]] if isinstance(a, int) else [a]))
    return state, out


def test_feeding_relieves_hunger_at_an_energy_cost():
    core = make_core(feed_cost=5, feed_amount=10)
    s = scenario(core, mothers=[(4, 4)], babies=[(4, 5)], hunger=[25], energy=[40])
    s, out = run(core, s, FEED)
    assert s.hunger.item() == 25 - 10 + 1  # fed, then a step of hunger
    assert s.energy.item() == 40 - 5 - 1
    assert out.events["fed"].item() == 1 and out.events["fed_own"].item() == 1
    far = scenario(core, mothers=[(4, 4)], babies=[(4, 6)], hunger=[25])
    far, out = run(core, far, FEED)
    assert out.events["fed"].item() == 0 and far.hunger.item() == 26


def test_a_mother_without_energy_to_spare_cannot_feed():
    core = make_core(feed_cost=5)
    s = scenario(core, mothers=[(4, 4)], babies=[(4, 5)], hunger=[25], energy=[4])
    s, out = run(core, s, FEED)
    assert out.events["fed"].item() == 0 and s.hunger.item() == 26


def test_carried_baby_moves_with_its_mother_and_is_put_down_on_request():
    core = make_core(baby_move_period=1)
    s = scenario(core, mothers=[(4, 4)], babies=[(4, 5)])
    s, out = run(core, s, CARRY)
    assert out.events["picked_up"].item() == 1 and s.carried_by.item() == 0
    s, out = run(core, s, UP, UP)
    assert yx(s.baby_pos) == yx(s.mother_pos) == (2, 4)
    assert out.events["carrying"].item() == 1
    s, out = run(core, s, CARRY)
    assert out.events["dropped"].item() == 1 and s.carried_by.item() == -1


def test_curious_young_baby_crawls_into_water_unless_carried():
    core = make_core(n_hazards=1, curiosity=1.0, baby_move_period=1)
    hazard = [(4, 7)]
    s = scenario(core, mothers=[(4, 4)], babies=[(4, 6)], hazards=hazard)
    s, out = run(core, s, STAY)
    assert out.events["baby_died"].item() == 1 and out.events["baby_harm_hazard"].item() == 1
    assert yx(s.baby_pos) == (4, 7) and not s.baby_alive.item()
    held = scenario(core, mothers=[(4, 5)], babies=[(4, 6)], hazards=hazard)
    held, _ = run(core, held, CARRY)
    held, out = run(core, held, STAY, STAY, STAY)
    assert held.baby_alive.item() and out.events["baby_harm_hazard"].item() == 0


def test_grown_baby_moves_every_step_avoids_water_and_feeds_itself():
    core = make_core(n_hazards=1, curiosity=1.0, grow_age=5, baby_move_period=100, cry_threshold=5)
    s = scenario(core, mothers=[(1, 1)], babies=[(4, 6)], hazards=[(4, 7)], age=[5])
    positions = []
    for _ in range(30):
        s, _ = run(core, s, STAY)
        positions.append(yx(s.baby_pos))
        assert s.baby_alive.item()
    assert len(set(positions)) > 3  # it moves every step, young ones every 100th


def test_grown_baby_eats_food_it_stands_on_when_hungry_and_young_ones_cannot():
    core = make_core(grow_age=5, cry_threshold=5)
    stay = torch.tensor([[STAY]])
    for age, hunger_after in ((5, 1), (4, 7)):
        s = scenario(core, mothers=[(1, 1)], babies=[(4, 4)], food=[(4, 4)], age=[age], hunger=[6])
        s, _ = core.step(s, stay, baby_actions=stay)
        assert s.hunger.item() == hunger_after


def test_unguarded_baby_is_bitten_and_a_shoo_sends_the_predator_home():
    core = make_core(n_predators=1, predator_speed=1.0, predator_bite=2, baby_health=3, predator_stun=5)
    s = scenario(core, mothers=[(4, 4)], babies=[(4, 4)], predators=[(4, 6)], carried_by=[0])
    s, out = run(core, s, STAY)  # the predator closes in to (4, 5)
    s, out = run(core, s, STAY)  # and bites the baby in her arms
    assert out.events["baby_harm_predator"].item() == 1 and s.health.item() == 1
    assert yx(s.predator_pos) == yx(s.predator_den) and s.predator_rest.item() == 5

    guarded = scenario(core, mothers=[(4, 4)], babies=[(4, 4)], predators=[(4, 6)], carried_by=[0])
    guarded, out = run(core, guarded, SHOO)
    assert out.events["guarded"].item() == 1
    assert guarded.predator_rest.item() == 4 and guarded.health.item() == 3


def test_shoo_only_reaches_predators_within_its_radius():
    core = make_core(n_predators=1, predator_speed=0.0, shoo_radius=2)
    s = scenario(core, mothers=[(4, 1)], babies=[(4, 2)], predators=[(4, 3)])  # distance 2
    s, out = run(core, s, SHOO)
    assert out.events["guarded"].item() == 1
    s = scenario(core, mothers=[(4, 1)], babies=[(4, 2)], predators=[(4, 4)])  # distance 3
    s, out = run(core, s, SHOO)
    assert out.events["guarded"].item() == 0 and s.predator_rest.item() == 0


def test_hungry_baby_starves_one_health_point_per_step():
    core = make_core(hunger_max=10, cry_threshold=5, baby_health=3, baby_move_period=100)
    s = scenario(core, mothers=[(1, 1)], babies=[(4, 4)], hunger=[9])
    harms = []
    for _ in range(3):
        s, out = run(core, s, STAY)
        harms.append(out.events["baby_harm_hunger"].item())
    assert harms == [1, 1, 1] and not s.baby_alive.item()
    assert out.events["baby_died"].item() == 1


def test_mothers_eat_food_and_starve_without_it():
    core = make_core(food_energy=20, energy_max=60, food_regrow=7)
    s = scenario(core, mothers=[(4, 4)], food=[(4, 4)], energy=[30])
    s, out = run(core, s, EAT)
    assert out.events["ate"].item() == 1 and s.energy.item() == 30 + 20 - 1
    assert s.food_timer[4, 4, 0].item() == 6
    weak = scenario(core, mothers=[(4, 4)], energy=[2])
    weak, out = run(core, weak, STAY)
    assert weak.mother_alive.item()
    weak, out = run(core, weak, STAY)
    assert not weak.mother_alive.item() and out.terminated.item() and out.events["mother_died"].item() == 1


def test_walls_block_and_water_drowns_a_mother():
    core = make_core(n_hazards=1)
    s = scenario(core, mothers=[(1, 1)], hazards=[(2, 1)])
    s, _ = run(core, s, UP)
    assert yx(s.mother_pos) == (1, 1)
    s, out = run(core, s, DOWN)
    assert not s.mother_alive.item() and out.events["mother_hazard"].item() == 1


def test_birth_spawns_a_baby_next_to_its_mother_and_switches_the_reward():
    core = make_core(birth_step=3, baby_reward_weight=1.0, max_cycles=50)
    state, obs = core.reset(rng.seed_key(5))
    birth = SCALARS.index("birth_flag") - len(SCALARS)
    rewards = []
    for t in range(1, 6):
        assert obs[0, 0, birth].item() == (ON if t > 3 else 0)
        state, out = core.step(state, torch.tensor([[STAY]]))
        obs = out.obs
        rewards.append(out.reward.item())
        if t == 3:
            assert out.events["baby_born"].item() == 1
            assert (state.baby_pos - state.mother_pos).abs().max().item() <= 1
            assert state.cells[(*yx(state.baby_pos), 0)].item() != HAZARD
    assert rewards == [1.0] * 5  # alive before birth; after it, the baby is alive
    mixed = make_core(birth_step=0, baby_reward_weight=0.75)
    s = scenario(mixed, mothers=[(4, 4)], babies=[(1, 1)], health=[1], hunger=[mixed.config.hunger_max])
    s, out = run(mixed, s, STAY)  # the baby starves to death: only (1 - w) of the reward remains
    assert out.reward.item() == pytest.approx(0.25)


def test_rebirth_after_a_death_only_while_births_remain():
    for births, expected in ((1, 1), (3, 3)):
        core = make_core(
            birth_step=0,
            births_per_life=births,
            rebirth_delay=2,
            hunger_max=2,
            cry_threshold=1,
            baby_health=1,
            max_cycles=40,
            energy_start=60,
        )
        state, _ = core.reset(rng.seed_key(1))
        born = int(state.baby_alive.sum())
        for _ in range(30):
            state, out = core.step(state, torch.tensor([[STAY]]))
            born += out.events["baby_born"].item()
        assert born == expected and state.births_left.item() == 0


def test_kin_markers_novel_markers_and_swapped_babies():
    keys = rng.seed_key(torch.arange(20))
    train = {tuple(m) for m in TRAIN_MARKERS}
    kin_core = NurseryCore(build_config(NurseryConfig, {"n_mothers": 3}))
    s, _ = kin_core.reset(keys)
    assert torch.equal(s.baby_marker, s.kin_marker)
    assert {tuple(m) for m in s.kin_marker.flatten(1).T.tolist()} <= train
    assert all(len({tuple(m) for m in s.kin_marker[..., b].T.tolist()}) == 3 for b in range(20))  # distinct
    novel, _ = NurseryCore(build_config(NurseryConfig, {"baby_markers": "novel"})).reset(keys)
    novel_markers = {tuple(m) for m in novel.baby_marker.flatten(1).T.tolist()}
    assert novel_markers <= {tuple(m) for m in NOVEL_MARKERS} and not novel_markers & train
    swapped, _ = NurseryCore(build_config(NurseryConfig, {"baby_markers": "swapped"})).reset(keys)
    assert torch.equal(swapped.baby_marker, swapped.kin_marker.roll(1, dims=1))


def test_observation_shows_the_baby_its_marker_crying_and_where_the_cry_comes_from():
    core = make_core(cry_threshold=5, view_radius=3, height=12, width=12)
    s = scenario(core, mothers=[(5, 5)], babies=[(6, 7)], hunger=[7])
    obs = core.observe(s)[0, 0]
    C, V = len(VIEW_CHANNELS), core.V
    view = obs[: V * V * C].view(V, V, C)
    cell = view[3 + 1, 3 + 2]
    assert cell[VIEW_CHANNELS.index("baby")] == ON and cell[VIEW_CHANNELS.index("baby_crying")] == ON
    assert cell[6:9].tolist() == s.baby_marker[:, 0, 0].tolist()
    assert view[3, 3, VIEW_CHANNELS.index("mother")] == 0  # a mother does not see herself as another
    assert view[..., VIEW_CHANNELS.index("baby")].sum() == ON  # exactly one baby cell
    far = scenario(core, mothers=[(1, 1)], babies=[(10, 10)], hunger=[7])
    scalars = core.observe(far)[0, 0, V * V * C :]
    assert scalars[SCALARS.index("cry_heard")] == ON
    assert scalars[SCALARS.index("cry_dy")] > 128 and scalars[SCALARS.index("cry_dx")] > 128  # down-right
    quiet = scenario(core, mothers=[(1, 1)], babies=[(10, 10)], hunger=[0])
    assert core.observe(quiet)[0, 0, V * V * C + SCALARS.index("cry_heard")] == 0


def test_view_edges_read_as_wall_and_food_is_visible():
    core = make_core()
    s = scenario(core, mothers=[(1, 1)], food=[(2, 2)])
    C, V = len(VIEW_CHANNELS), core.V
    view = core.observe(s)[0, 0, : V * V * C].view(V, V, C)
    assert (view[0, :, VIEW_CHANNELS.index("wall")] == ON).all()  # beyond the border
    assert view[3 + 1, 3 + 1, VIEW_CHANNELS.index("food")] == ON


def test_dead_mothers_stay_dead_and_their_actions_do_nothing():
    core = make_core(n_mothers=2)
    s = scenario(core, mothers=[(4, 4), (2, 2)], energy=[1, 40])
    s, _ = run(core, s, [STAY, STAY])
    assert s.mother_alive[:, 0].tolist() == [False, True]
    before = s.mother_pos.clone()
    for a in (RIGHT, EAT, CARRY, FEED, SHOO):
        s, out = run(core, s, [a, STAY])
        assert not s.mother_alive[0, 0] and yx(s.mother_pos) == yx(before)
        assert out.reward[0, 0].item() == 0.0 and out.obs[0, 0].sum().item() == 0


def test_reset_done_resets_only_flagged_worlds():
    core = make_core()
    state, _ = core.reset(rng.seed_key(torch.arange(4)))
    for _ in range(5):
        state, out = core.step(state, torch.zeros(4, 1, dtype=torch.int64))
    fresh, fresh_obs = core.reset_done(state, out.obs, torch.tensor([True, False, False, True]))
    assert torch.equal(fresh_obs, core.observe(fresh)) and torch.equal(fresh_obs[1:3], out.obs[1:3])
    assert fresh.t.tolist() == [0, 5, 5, 0]
    assert torch.equal(fresh.key[1:3], state.key[1:3]) and not torch.equal(fresh.key[0], state.key[0])


def test_same_keys_same_worlds_whatever_the_batch():
    core = make_core(n_mothers=2, n_predators=1, n_hazards=4)
    keys = rng.seed_key(torch.arange(6))
    big, _ = core.reset(keys)
    small, _ = core.reset(keys[2:3])
    acts = torch.randint(0, 9, (40, 6, 2), generator=torch.Generator().manual_seed(0))
    for t in range(40):
        big, out_big = core.step(big, acts[t])
        small, out_small = core.step(small, acts[t, 2:3])
        assert torch.equal(out_big.obs[2:3], out_small.obs)
    assert all(
        torch.equal(a, b) for a, b in zip(big.index(slice(2, 3)).tensors(), small.tensors(), strict=True)
    )


def test_every_layout_is_connected_so_nothing_is_sealed_off():
    core = NurseryCore(build_config(NurseryConfig, {"n_walls": 14, "n_hazards": 14}))
    state, _ = core.reset(rng.seed_key(torch.arange(2000)))
    assert core._connected(state.cells).all()
    # and the check itself does detect a sealed pocket
    s = scenario(make_core(n_hazards=1), mothers=[(1, 1)], hazards=[(1, 2)], walls=[(2, 1)])
    assert not make_core()._connected(s.cells).item()


def test_baby_brains_are_pluggable_and_see_the_world_in_the_mothers_format():
    from worlds.nursery.nursery_v0 import NurseryEnv

    seen = []

    def brain(obs):
        seen.append(obs.shape)
        return np.full(obs.shape[0], UP)

    env = NurseryEnv(baby_brain=brain, birth_step=0, baby_move_period=1, n_predators=0, n_hazards=0)
    env.reset(seed=2)
    rows = [env.world.baby_pos[0, :, 0].clone()]  # the babies' rows
    for _ in range(3):
        env.step({a: STAY for a in env.agents})
        rows.append(env.world.baby_pos[0, :, 0].clone())
    assert seen == [(2, env.core.obs_dim)] * 3
    moved = [(later <= earlier).all() for earlier, later in itertools.pairwise(rows)]
    assert all(moved) and (rows[-1] < rows[0]).any()  # only ever up (until a wall stops them)


def test_drowned_mothers_leave_the_agent_list():
    from worlds.nursery.nursery_v0 import NurseryEnv

    env = NurseryEnv(n_hazards=1, n_predators=0, height=9, width=9)
    env.reset(seed=0)
    env.world = scenario(env.core, mothers=[(4, 4), (1, 1)], hazards=[(4, 5)])
    _, _, term, _, _ = env.step({"mother_0": RIGHT, "mother_1": STAY})
    assert term == {"mother_0": True, "mother_1": False} and env.agents == ["mother_1"]
    _, rewards, _, _, _ = env.step({"mother_1": STAY})
    assert list(rewards) == ["mother_1"]
