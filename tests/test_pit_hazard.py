"""Pits: the nursery's held-out hazard type. Deadly exactly like water, seen at a never-trained shade of
the hazard channel, drawn from their own random stream, and refused as a training world."""

import dataclasses

import pytest
import torch

from analysis.cli import main
from caring.tasks.nursery import NurseryTask
from worlds import rng
from worlds.config import ConfigError, build_config
from worlds.nursery import core as nursery_core
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import (
    CARRY,
    DOWN,
    FLOOR,
    HAZARD,
    N_ACTIONS,
    ON,
    PIT,
    PIT_SHADE,
    STAY,
    VIEW_CHANNELS,
    WALL,
    NurseryCore,
    NurseryState,
    is_hazard,
)
from worlds.nursery.scenario import scenario
from worlds.nursery.scripted import SCRIPTED

HAZARD_CHANNEL = VIEW_CHANNELS.index("hazard")


def make_core(**overrides) -> NurseryCore:
    base = {"n_mothers": 1, "n_predators": 0, "n_hazards": 1, "height": 9, "width": 9}
    return NurseryCore(build_config(NurseryConfig, {**base, **overrides}))


def hazard_view(core: NurseryCore, obs: torch.Tensor) -> torch.Tensor:
    """(..., V, V) the hazard channel of the view cells of observations (..., obs_dim)."""
    view = obs[..., : core.view_dim].reshape(*obs.shape[:-1], core.V, core.V, len(VIEW_CHANNELS))
    return view[..., HAZARD_CHANNEL]


def as_water(state: NurseryState) -> NurseryState:
    """The same state with every pit turned into water."""
    return dataclasses.replace(state, cells=torch.where(state.cells == PIT, HAZARD, state.cells))


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_pit_share_is_the_share_of_hazard_tiles_that_are_pits(share):
    core = NurseryCore(NurseryConfig(pit_share=share))
    state, _ = core.reset(rng.seed_key(torch.arange(400)))
    pits = (state.cells == PIT).sum((0, 1))  # (B,)
    water = (state.cells == HAZARD).sum((0, 1))
    assert (pits + water == core.K).all()  # every hazard tile is one or the other
    k = state.hazard_pos
    assert is_hazard(state.cells[k[0], k[1], torch.arange(state.batch)]).all()  # hazard_pos lists pits too
    if share in (0.0, 1.0):
        assert (pits == share * core.K).all()
    else:
        assert 0.45 < pits.sum().item() / (400 * core.K) < 0.55
        assert (pits > 0).any() and (water > 0).any()


def test_a_pit_world_differs_from_its_water_world_only_in_the_pits_and_their_shade():
    """Same seeds, random mothers, scripted babies and predators: a pit world steps exactly like the
    water world (every state field, reward and event, the harm and hazard-contact events included);
    only the terrain code and the hazard channel's value differ. So pits kill whom water kills,
    curious babies seek them, grown babies, predators and layouts treat them like water, and the pit
    draw disturbs no other random number."""
    keys = rng.seed_key(torch.arange(48))
    gen = torch.Generator().manual_seed(7)
    cores = [NurseryCore(NurseryConfig(pit_share=s, max_cycles=150)) for s in (0.0, 0.5, 1.0)]
    runs = [list(c.reset(keys)) for c in cores]
    events = {"baby_harm_hazard": 0, "mother_hazard": 0, "baby_born": 0}
    shades = set()
    for _ in range(150):
        actions = torch.randint(0, N_ACTIONS, (48, cores[0].A), generator=gen)
        outs = []
        for i, core in enumerate(cores):
            runs[i][0], out = core.step(runs[i][0], actions)
            outs.append(out)
        water_state, water_out = runs[0][0], outs[0]
        for core, (state, _), out in zip(cores[1:], runs[1:], outs[1:], strict=True):
            assert all(
                torch.equal(a, b)
                for a, b in zip(as_water(state).tensors(), water_state.tensors(), strict=True)
            )
            assert torch.equal(out.reward, water_out.reward) and torch.equal(
                out.terminated, water_out.terminated
            )
            assert all(torch.equal(out.events[k], water_out.events[k]) for k in out.events)
            seen = hazard_view(core, out.obs)
            shades.update(seen.unique().tolist())
            seen_as_water = torch.where(seen == PIT_SHADE, ON, seen)
            assert torch.equal(seen_as_water, hazard_view(core, water_out.obs))
            rest = out.obs.clone()
            hazard_view(core, rest).zero_()
            water_rest = water_out.obs.clone()
            hazard_view(core, water_rest).zero_()
            assert torch.equal(rest, water_rest)  # everything but the hazard channel is the same
        for k in events:
            events[k] += int(water_out.events[k].sum())
    assert min(events.values()) > 0  # babies and mothers did meet hazards
    assert {0, PIT_SHADE, ON} <= shades  # pits (and, at share 0.5, water) were in view


def test_a_baby_crawls_into_a_pit_and_dies_as_in_water_unless_carried():
    core = make_core(curiosity=1.0, baby_move_period=1)
    for pit in (True, False):
        where = {"pits" if pit else "hazards": [(4, 7)]}
        s = scenario(core, mothers=[(4, 4)], babies=[(4, 6)], **where)
        s, out = core.step(s, torch.tensor([[STAY]]))
        assert s.cells[4, 7, 0].item() == (PIT if pit else HAZARD)
        assert out.events["baby_died"].item() == 1 and out.events["baby_harm_hazard"].item() == 1
        assert tuple(s.baby_pos[:, 0, 0].tolist()) == (4, 7) and not s.baby_alive.item()
        held = scenario(core, mothers=[(4, 5)], babies=[(4, 6)], **where)
        held, _ = core.step(held, torch.tensor([[CARRY]]))
        for _ in range(3):
            held, out = core.step(held, torch.tensor([[STAY]]))
        assert held.baby_alive.item() and out.events["baby_harm_hazard"].item() == 0


def test_a_pit_drowns_a_mother_and_grown_babies_keep_out_of_pits():
    core = make_core()
    s = scenario(core, mothers=[(1, 1)], pits=[(2, 1)])
    s, out = core.step(s, torch.tensor([[DOWN]]))
    assert not s.mother_alive.item() and out.events["mother_hazard"].item() == 1 and out.terminated.item()

    grown = make_core(curiosity=1.0, grow_age=5, baby_move_period=100, hunger_max=1000)
    s = scenario(grown, mothers=[(1, 1)], babies=[(4, 6)], pits=[(4, 7)], age=[5])
    places = set()
    for _ in range(60):
        s, _ = grown.step(s, torch.tensor([[STAY]]))
        places.add(tuple(s.baby_pos[:, 0, 0].tolist()))
        assert s.baby_alive.item()
    assert len(places) > 5  # it wandered, never into the pit


def test_the_expert_never_walks_into_a_pit():
    core = NurseryCore(NurseryConfig(pit_share=1.0, max_cycles=120))
    expert = SCRIPTED["expert"](core)
    state, obs = core.reset(rng.seed_key(torch.arange(64)))
    for _ in range(120):
        state, out = core.step(state, expert(state, obs))
        obs = out.obs
        assert out.events["mother_hazard"].sum().item() == 0


def test_the_view_shows_a_pit_at_its_own_shade_and_keeps_the_observation_size():
    core = make_core(n_hazards=2, view_radius=3)
    assert core.obs_dim == make_core(n_hazards=2, view_radius=3, pit_share=0.0).obs_dim
    assert core.obs_dim == NurseryCore(NurseryConfig(pit_share=1.0)).obs_dim == NurseryCore().obs_dim
    s = scenario(core, mothers=[(4, 4)], hazards=[(4, 6)], pits=[(2, 3)], food=[(5, 5)])
    seen = hazard_view(core, core.observe(s))[0, 0]  # (V, V), the mother at its centre (3, 3)
    assert seen[3 + 0, 3 + 2].item() == ON  # water two cells to her right
    assert seen[3 - 2, 3 - 1].item() == PIT_SHADE and 0 < PIT_SHADE < ON  # the pit, up-left
    assert int((seen > 0).sum()) == 2
    view = core.observe(s)[0, 0, : core.view_dim].view(core.V, core.V, -1)
    assert view[1, 2].tolist() == [0, PIT_SHADE] + [0] * (len(VIEW_CHANNELS) - 2)  # not wall, not food
    assert view[4, 4, VIEW_CHANNELS.index("food")].item() == ON


def test_the_cell_code_table_keeps_its_old_rows():
    """Worlds without pits must look exactly as before: the view's rows for codes 0..5 (terrain + 3 *
    food_ready) are the pre-pit table, and the pit's codes alias none of them."""
    core = NurseryCore()
    old = torch.zeros(6, len(VIEW_CHANNELS), dtype=torch.uint8)
    old[WALL, 0] = old[WALL + 3, 0] = ON
    old[HAZARD, 1] = old[HAZARD + 3, 1] = ON
    old[FLOOR + 3, 2] = ON
    assert torch.equal(core.code_table[:6], old)
    assert PIT not in (FLOOR, WALL, HAZARD, FLOOR + 3, WALL + 3, HAZARD + 3)
    assert core.code_table[PIT].tolist() == core.code_table[PIT + 3].tolist() == [0, PIT_SHADE] + [0] * 8
    streams = {
        nursery_core._S_LAYOUT,
        nursery_core._S_MARKER,
        nursery_core._S_STEP,
        nursery_core._S_BIRTH_PLACE,
    }
    assert nursery_core._S_PIT not in streams  # pits have a stream of their own


def test_training_refuses_a_world_with_pits(tmp_path, capsys):
    task = NurseryTask()
    task.check_training_world(NurseryConfig())  # no pits: fine
    with pytest.raises(ConfigError, match="pit_share=0"):
        task.check_training_world(NurseryConfig(pit_share=0.01))
    out = tmp_path / "run"
    assert main(["train", "nursery", "--out", str(out), "--set", "pit_share=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "for evaluation only" in err and not out.exists()
