"""The selective-care world (`--preset selective`, issue 18): orphans nobody is paid for, care that
reaches only the baby on her cell, a cry that carries its baby's marker, and scripted mothers who tell
their baby by its marker or do not."""

import json

import pytest
import torch

from caring.evaluate import evaluate
from worlds import rng
from worlds.config import ConfigError, build_config
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import (
    CARRY,
    FEED,
    FURTHER_CRY,
    HEARD_MARKER,
    ON,
    SCALARS,
    STAY,
    VIEW_CHANNELS,
    NurseryCore,
)
from worlds.nursery.nursery_v0 import NurseryEnv
from worlds.nursery.scenario import scenario
from worlds.nursery.scripted import SCRIPTED


def make_core(**overrides):
    base = {"n_mothers": 1, "n_predators": 0, "n_hazards": 0, "height": 9, "width": 9}
    return NurseryCore(build_config(NurseryConfig, {**base, **overrides}))


def step(core, state, *actions):
    return core.step(state, torch.tensor([list(actions)]))


def test_with_cell_reach_she_tends_only_the_baby_on_her_cell_the_one_she_carries_first():
    core = make_core(n_mothers=2, care_reach="cell")
    beside = scenario(core, mothers=[(4, 4), (1, 1)], babies=[(4, 5), (7, 7)], hunger=[20, 0])
    after, out = step(core, beside, FEED, STAY)
    assert out.events["fed"][0, 0] == 0 and after.hunger[0, 0] == 21
    after, out = step(core, beside, CARRY, STAY)
    assert out.events["picked_up"][0, 0] == 0
    # On her cell: the other mother's baby, and her own that she carries. FEED goes to the carried one
    # whatever its slot; with adjacent reach the world would have picked her own slot.
    for carried, fed in ((1, 1), (0, 0)):
        s = scenario(
            core, mothers=[(4, 4), (1, 1)], babies=[(4, 4), (4, 4)], hunger=[20, 20], carried_by=[-1, -1]
        )
        s.carried_by[carried, 0] = 0
        after, out = step(core, s, FEED, STAY)
        assert out.events["fed"][0, 0] == 1 and out.events["fed_own"][0, 0] == int(fed == 0)
        assert after.hunger[fed, 0] < 20 < after.hunger[1 - fed, 0]


def test_orphans_are_born_cared_for_by_nobody_and_counted_nowhere():
    core = make_core(n_mothers=1, orphans=2, birth_step=0, max_cycles=40)
    assert (core.M, core.A) == (1, 3)
    state, obs = core.reset(rng.seed_key(torch.arange(16)))
    assert state.baby_alive.all(), "every slot's baby is born, the orphans' too"
    assert not state.mother_alive[1:].any() and not state.joined[1:].any()
    assert (obs[:, 1:] == 0).all(), "an orphan's slot sees nothing: no mother is there"
    _, out = core.step(state, torch.zeros(16, 3, dtype=torch.int64))
    assert all((v[:, 1:] == 0).all() for v in out.events.values()), "events are a mother's and her baby's"
    assert (out.reward[:, 1:] == 0).all()
    # An evaluation counts her baby only: one born per episode, not three.
    result = evaluate(core, SCRIPTED["negligent"](core), 32, seed=0)
    assert result["babies_born"] == 32
    # ... and a PettingZoo env has one agent.
    env = NurseryEnv(n_mothers=1, orphans=2, birth_step=0)
    env.reset(seed=0)
    assert env.possible_agents == ["mother_0"]
    _, rewards, *_ = env.step({"mother_0": 0})
    assert list(rewards) == ["mother_0"]


def test_marked_hearing_adds_the_crying_babys_marker_and_the_default_world_is_unchanged():
    assert NurseryCore().scalar_names == SCALARS and NurseryCore().scalar_cells == 1
    core = make_core(n_mothers=2, hearing="marked", cry_threshold=5)
    assert core.scalar_names == SCALARS + HEARD_MARKER and core.obs_dim > make_core(n_mothers=2).obs_dim
    V, C = core.V, len(VIEW_CHANNELS)
    cry = [V * V * C + core.scalar_names.index(name) for name in HEARD_MARKER]
    heard = V * V * C + core.scalar_names.index("cry_heard")
    # Mother 0 at (1, 1); the other mother's baby cries nearer her than her own, which also cries.
    s = scenario(core, mothers=[(1, 1), (7, 7)], babies=[(7, 6), (2, 2)], hunger=[6, 6])
    obs = core.observe(s)[0]
    assert obs[0, heard] == ON and obs[0, cry].tolist() == s.baby_marker[:, 1, 0].tolist()
    assert obs[1, cry].tolist() == s.baby_marker[:, 0, 0].tolist()  # she hears her own, the nearer one
    quiet = scenario(core, mothers=[(1, 1), (7, 7)], babies=[(7, 6), (2, 2)])
    assert core.observe(quiet)[0, 0, cry].tolist() == [0, 0, 0]


def test_hearing_several_gives_the_nearest_cries_each_with_its_direction_and_marker():
    core = make_core(n_mothers=2, orphans=1, hearing="several", cries_heard=4, cry_threshold=5)
    further = [f"cry{k}_{part}" for k in (2, 3, 4) for part in FURTHER_CRY]
    assert core.scalar_names == SCALARS + HEARD_MARKER + tuple(further)
    at = {name: len(VIEW_CHANNELS) * core.V * core.V + i for i, name in enumerate(core.scalar_names)}
    # Mother 0 at (1, 1): mother 1's baby cries at (2, 2), her own farther at (5, 4), the orphan is quiet.
    s = scenario(core, mothers=[(1, 1), (7, 7), None], babies=[(5, 4), (2, 2), (7, 6)], hunger=[6, 6, 0])
    obs = core.observe(s)[0, 0]
    marker = s.baby_marker[:, :, 0].tolist()  # (3, babies)
    assert [obs[at[f"cry_marker_{c}"]] for c in "rgb"] == [marker[i][1] for i in range(3)]  # the nearest
    scale = max(core.H, core.W)
    assert obs[at["cry2_heard"]] == ON
    assert (obs[at["cry2_dy"]], obs[at["cry2_dx"]]) == (128 + 4 * 127 // scale, 128 + 3 * 127 // scale)
    assert [obs[at[f"cry2_marker_{c}"]] for c in "rgb"] == [marker[i][0] for i in range(3)]  # her own
    for k in (3, 4):  # the silent orphan, and a fourth cry where there are three babies
        assert [obs[at[f"cry{k}_{part}"]] for part in FURTHER_CRY] == [0, 128, 128, 0, 0, 0]
    # The size of what she hears does not change with the number of babies (curricula keep one network).
    assert make_core(n_mothers=2, hearing="several", cries_heard=4).obs_dim == core.obs_dim
    # Hearing two cries of three, the farthest is not heard: the sensing expert does not know where hers
    # is when it is the farthest, and does when it is among the two nearest.
    two = make_core(n_mothers=2, orphans=1, hearing="several", cries_heard=2, cry_threshold=5)
    far = scenario(two, mothers=[(1, 1), (7, 7), None], babies=[(7, 5), (2, 2), (3, 3)], hunger=[6, 6, 6])
    near = scenario(two, mothers=[(1, 1), (7, 7), None], babies=[(3, 4), (2, 2), (7, 5)], hunger=[6, 6, 6])
    sensing = SCRIPTED["expert-senses"](two)
    assert not sensing._sense(far)[0][0, 0] and sensing._sense(near)[0][0, 0]
    # Mother 1 at (7, 7) hears mother 0's baby first (3 cells away), then her own (5).
    obs1 = core.observe(s)[0, 1]
    assert [obs1[at[f"cry_marker_{c}"]] for c in "rgb"] == [marker[i][0] for i in range(3)]
    assert [obs1[at[f"cry2_marker_{c}"]] for c in "rgb"] == [marker[i][1] for i in range(3)]


def test_the_marker_comparator_reads_each_marker_she_sees_or_hears_with_one_set_of_weights():
    from analysis.hooks import cache
    from caring.networks import MotherNet

    core = make_core(n_mothers=2, orphans=1, hearing="several", cries_heard=4, cry_threshold=5)
    kin, seen = core.marker_inputs()
    C, VV = len(VIEW_CHANNELS), core.V * core.V
    names = {core.view_dim + i: name for i, name in enumerate(core.scalar_names)}
    assert [names[i] for i in kin] == ["kin_marker_r", "kin_marker_g", "kin_marker_b"]
    assert len(seen) == VV + 4  # every view cell, then every cry she can hear
    marker_channels = [VIEW_CHANNELS.index(f"baby_marker_{c}") for c in "rgb"]
    assert all([i - cell * C for i in seen[cell]] == marker_channels for cell in range(VV))
    heard = [n for n in core.scalar_names if "marker" in n and not n.startswith("kin")]
    assert [names[i] for triple in seen[VV:] for i in triple] == heard
    # Mother 0 at (1, 1) sees mother 1's baby at (2, 2), one cell down and right of her view's centre.
    s = scenario(core, mothers=[(1, 1), (7, 7), None], babies=[(5, 4), (2, 2), (7, 6)], hunger=[6, 6, 0])
    obs = core.observe(s)[0]  # (mothers, obs_dim)
    r = core.config.view_radius
    assert obs[0, seen[(r + 1) * core.V + r + 1]].tolist() == s.baby_marker[:, 1, 0].tolist()

    torch.manual_seed(0)
    net = MotherNet(core.obs_dim, 9, 16, kin_match=3, markers=(kin, seen))
    assert net.trunk_1.in_features == core.obs_dim + len(seen) * 3
    assert net.blank().trunk_1.in_features == net.trunk_1.in_features

    def features(o):
        with cache(net, ["hook_kin_match"]) as acts:
            net(o)
        return acts["hook_kin_match"].view(len(o), len(seen), 3)

    before = features(obs)
    i, j = seen[(r + 1) * core.V + r + 1], seen[VV + 1]  # a view cell and the second cry heard
    swapped = obs.clone()
    swapped[:, i], swapped[:, j] = obs[:, j], obs[:, i]
    after = features(swapped)
    cell, cry = (r + 1) * core.V + r + 1, VV + 1
    assert torch.equal(after[:, cell], before[:, cry]) and torch.equal(after[:, cry], before[:, cell])
    rest = [k for k in range(len(seen)) if k not in (cell, cry)]
    assert torch.equal(after[:, rest], before[:, rest])
    other_kin = obs.clone()
    other_kin[:, kin] = obs[1, kin]  # mother 0 with mother 1's marker: her reading of every marker moves
    assert not torch.equal(features(other_kin)[0], before[0]) and torch.equal(
        features(other_kin)[1], before[1]
    )
    # trunk_1 reads the observation, then the comparator's features, with one weight matrix
    with cache(net, ["hook_obs", "hook_kin_match", "hook_trunk_1"]) as acts:
        net(obs)
    both = torch.cat([acts["hook_obs"], acts["hook_kin_match"]], 1)
    torch.testing.assert_close(acts["hook_trunk_1"], torch.relu(net.trunk_1(both)))


def test_kin_match_is_refused_in_a_world_without_markers(tmp_path, capsys):
    from analysis.cli import main

    args = ["train", "lava", "--steps", "64", "--out", str(tmp_path / "run"), "--train-set", "kin_match=2"]
    assert main(args) == 2
    assert "kin_match needs a world with kin markers" in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_a_newborn_cries_for_its_first_newborn_cry_steps_whatever_its_hunger():
    core = make_core(newborn_cry=2, cry_threshold=20)
    C, VV = len(VIEW_CHANNELS), core.V * core.V
    heard = C * VV + SCALARS.index("cry_heard")
    s = scenario(core, mothers=[(4, 4)], babies=[(4, 5)])  # newborn (age 0), fed, in her view
    cries = []
    for _ in range(3):
        obs = core.observe(s)[0, 0]
        cries.append((int(obs[VIEW_CHANNELS.index("baby_crying") : C * VV : C].max()), int(obs[heard])))
        s = step(core, s, STAY)[0]
    assert cries == [(ON, ON), (ON, ON), (0, 0)]
    assert not make_core().crying(scenario(make_core(), mothers=[(4, 4)], babies=[(4, 5)])).any()


def test_the_viewer_shows_a_newborn_crying_and_a_fed_one_content(monkeypatch):
    from worlds.nursery.render import Renderer

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    for newborn_cry, cue in ((3, "crying"), (0, "content")):
        core = make_core(newborn_cry=newborn_cry)
        state = scenario(core, mothers=[(4, 4)], babies=[(4, 5)])
        facts = {f.label: f.text for f in Renderer(core).agents(state)[0].facts}
        assert facts["baby"].startswith(cue), facts


@pytest.mark.parametrize(
    "settings, error",
    [
        ({"orphans": 1, "generations": 2}, "orphans > 0 needs generations = 1"),
        ({"n_mothers": 6, "orphans": 3}, "9 baby slots, but there are only 8"),
        ({"care_reach": "near"}, "care_reach"),
        ({"hearing": "loud"}, "hearing"),
    ],
)
def test_bad_selective_settings_are_one_clear_error(settings, error):
    with pytest.raises(ConfigError, match=error):
        build_config(NurseryConfig, settings)


def test_the_expert_tells_her_baby_by_its_marker_and_the_indiscriminate_one_takes_the_nearest():
    core = make_core(n_mothers=2, orphans=1, baby_markers="swapped")
    s = scenario(core, mothers=[(1, 1), (7, 7), None], babies=[(1, 2), (6, 7), (2, 1)])
    s.baby_marker = s.kin_marker.roll(1, dims=1)  # each baby wears the next slot's kin marker
    expert, anyone = SCRIPTED["expert"](core), SCRIPTED["expert-any"](core)
    wears = [(s.kin_marker[:, m, 0] == s.baby_marker[:, :, 0].T).all(1).nonzero().item() for m in range(2)]
    assert expert.babies(s)[:2, 0].tolist() == wears  # not her slot's baby: the one with her marker
    novel = scenario(core, mothers=[(1, 1), (7, 7), None], babies=[(1, 2), (6, 7), (2, 1)])
    novel.baby_marker = core.novel_markers[:, :3, None]
    assert expert.babies(novel)[:2, 0].tolist() == [-1, -1], "a never-seen marker is nobody's"
    # Nearest free baby: mother 0 has her own and the orphan one step away (the lower slot wins), mother
    # 1 her own; a baby another mother carries is not free.
    assert anyone.babies(novel)[:2, 0].tolist() == [0, 1]
    novel.carried_by[0, 0] = 1
    assert anyone.babies(novel)[:2, 0].tolist() == [2, 0]


def test_in_the_selective_world_telling_her_baby_apart_pays():
    """The issue's selectivity check with scripted mothers: the kin-aware expert saves clearly more of
    her own babies than the indiscriminate one, and lets a never-seen baby placed as hers die."""
    episodes = 120  # 240 of her babies per policy: the gap is ~0.24, each CI about +-0.06

    def survival(policy: str, markers: str) -> dict:
        core = NurseryCore(build_config(NurseryConfig, {"preset": "selective", "baby_markers": markers}))
        return evaluate(core, SCRIPTED[policy](core), episodes, seed=7)

    own, indiscriminate = survival("expert", "kin"), survival("expert-any", "kin")
    assert indiscriminate["baby_survival_ci95"][1] < own["baby_survival_ci95"][0]
    foster = survival("expert", "novel")
    assert foster["baby_survival_rate"] <= 0.3 * own["baby_survival_rate"]
    # Where the care goes: the kin-aware expert carries her own, the indiscriminate one mostly others'.
    assert own["carry_share_own"] > 0.95 and indiscriminate["carry_share_own"] < 0.5
    assert own["own_baby_held_rate"] > indiscriminate["own_baby_held_rate"] + 0.3


def test_the_indiscriminate_expert_is_marker_blind():
    keys = rng.seed_key(torch.arange(64))
    choices = []
    for markers in ("kin", "novel"):
        core = NurseryCore(build_config(NurseryConfig, {"preset": "selective", "baby_markers": markers}))
        state, _ = core.reset(keys)
        for _ in range(30):  # past the births (step 20)
            state, _ = core.step(state, SCRIPTED["expert-any"](core)(state, None))
        choices.append(SCRIPTED["expert-any"](core).babies(state))
    assert (choices[0] >= 0).any() and torch.equal(*choices)


def test_a_selective_run_trains_counting_the_mothers_steps_and_loads_for_evaluation(tmp_path, capsys):
    """Budgets count the mothers' steps (two), not the orphans' slots (four): 3 updates of 8 worlds x 2
    mothers x 8 steps; the trained mother (with a marker comparator) then evaluates in her world and in
    its foster variant, and her target is re-written in both layers that read her kin marker."""
    from analysis.cli import main

    out = tmp_path / "run"
    tiny = [
        "--train-set",
        "worlds=8",
        "--train-set",
        "rollout=8",
        "--train-set",
        "hidden=16",
        "--train-set",
        "kin_match=2",
    ]
    args = ["train", "nursery", "--preset", "selective", "--method", "ppo", "--steps", str(3 * 8 * 2 * 8)]
    assert main([*args, "--out", str(out), *tiny]) == 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[-1].split(",")[1] == str(3 * 8 * 2 * 8)
    for markers in ("kin", "novel"):
        capsys.readouterr()
        eval_args = ["eval", "nursery", "--policy", str(out), "--episodes", "4", "--json"]
        assert main([*eval_args, "--set", f"baby_markers={markers}"]) == 0
        assert json.loads(capsys.readouterr().out)["babies_born"] == 4 * 2  # her babies, not the orphans
    # retargeting runs on it, scored with her own baby and a new one together (notebook 04 runs the
    # assays and unit roles on a selective mother)
    capsys.readouterr()
    argv = ["retarget", str(out), "--out", str(tmp_path / "rt"), "--method", "rewrite", "--quick", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    for when in ("before", "after"):
        assert 0 <= report[f"new_baby_beside_own_survival_{when}"] <= 1
        assert 0 <= report[f"own_baby_beside_new_survival_{when}"] <= 1


def test_caring_params_lists_the_selective_preset_and_its_new_settings(capsys):
    from analysis.cli import main

    assert main(["params", "nursery"]) == 0
    out = capsys.readouterr().out
    assert "selective: birth_place=anywhere orphans=2 care_reach=cell hearing=several newborn_cry=3" in out
    assert all(name in out for name in ("orphans", "care_reach", "hearing", "newborn_cry"))


def test_recognition_assays_separate_the_kin_aware_expert_from_the_indiscriminate_one():
    """Two babies equally far in view, hers and another mother's: the kin-aware expert steps towards hers
    when it wears her marker and never when it wears a never-seen one; the indiscriminate expert does
    the same in both (recognition = the difference = 0). Each protective step shortens the walk to her
    baby and not to the other."""
    from analysis import assays
    from worlds.grid import distance_field
    from worlds.nursery.core import DOWN, FLOOR, LEFT, RIGHT, UP

    core = NurseryCore(build_config(NurseryConfig, {"preset": "selective"}))
    batteries = {m: assays.build_battery(core, 24, 7, m, assays.RECOGNITIONS) for m in ("kin", "novel")}
    s, battery = batteries["kin"].state, batteries["kin"]
    for i in range(len(battery.situation)):
        cells = s.cells[:, :, i : i + 1] == FLOOR
        walks = []
        for slot in (0, 1):
            goal = torch.zeros_like(cells)
            goal[s.baby_pos[0, slot, i], s.baby_pos[1, slot, i]] = True
            walks.append(distance_field(cells, goal)[:, :, 0])
        y, x = int(s.mother_pos[0, 0, i]), int(s.mother_pos[1, 0, i])
        assert walks[0][y, x] == walks[1][y, x] >= 2  # equally far
        moves = {UP: (y - 1, x), RIGHT: (y, x + 1), DOWN: (y + 1, x), LEFT: (y, x - 1)}
        for move, (ty, tx) in moves.items():
            serves_hers_alone = bool(walks[0][ty, tx] < walks[0][y, x] <= walks[1][ty, tx])
            assert bool(battery.protective[i, move]) == serves_hers_alone
        assert battery.protective[i].any()

    def towards(name, marker):
        scores = assays.score(SCRIPTED[name](core), batteries[marker])
        return assays.summary(scores, (assays.RECOGNITION,))[assays.RECOGNITION]

    assert towards("expert", "kin") > 0.6 and towards("expert", "novel") == 0.0
    assert towards("expert-any", "kin") == towards("expert-any", "novel")


def test_in_a_cell_reach_world_the_assays_put_her_on_the_baby_she_must_lift():
    from analysis import assays

    core = NurseryCore(build_config(NurseryConfig, {"preset": "selective"}))
    battery = assays.build_battery(core, 8, 2, "kin")
    s = battery.state
    for i, name in enumerate(battery.situation):
        if name == "baby_by_water":
            assert (s.mother_pos[:, 0, i] == s.baby_pos[:, 0, i]).all() and battery.protective[i, CARRY]
        if name == "stranger_by_water":
            assert (s.mother_pos[:, 0, i] == s.baby_pos[:, 1, i]).all()
    scores = assays.score(SCRIPTED["expert"](core), battery)
    assert scores["baby_by_water"]["score"] == 1.0 and scores["stranger_by_water"]["score"] == 0.0


def test_with_both_markers_her_baby_wears_hers_and_orphan_i_the_foster_marker_of_mother_i():
    core = NurseryCore(build_config(NurseryConfig, {"preset": "selective", "baby_markers": "both"}))
    state, _ = core.reset(torch.arange(64))
    M = core.M
    assert torch.equal(state.baby_marker[:, :M], state.kin_marker[:, :M])
    train, novel = core.train_markers.T.tolist(), core.novel_markers.T.tolist()
    for world in range(64):
        for i in range(M):
            palette_index = train.index(state.kin_marker[:, i, world].tolist())
            assert state.baby_marker[:, M + i, world].tolist() == novel[palette_index]
    with pytest.raises(ConfigError, match="baby_markers=both needs orphans >= 1"):
        build_config(NurseryConfig, {"baby_markers": "both"})


def test_evaluation_counts_the_orphans_a_mother_saves_apart_from_her_own():
    core = NurseryCore(build_config(NurseryConfig, {"preset": "selective"}))
    kin_aware = evaluate(core, SCRIPTED["expert"](core), 60, seed=4)
    indiscriminate = evaluate(core, SCRIPTED["expert-any"](core), 60, seed=4)
    assert kin_aware["orphans_born"] == indiscriminate["orphans_born"] == 60 * 2
    assert kin_aware["orphan_survival_rate"] < 0.1 < 0.25 < indiscriminate["orphan_survival_rate"]
    plain = NurseryCore(NurseryConfig())
    assert "orphan_survival_rate" not in evaluate(plain, SCRIPTED["expert"](plain), 2, seed=0)


def test_the_sensing_expert_knows_her_baby_only_by_sight_cry_or_memory():
    """In view she walks to it; silent and out of view she does not know where it is (she wanders, the
    omniscient expert walks straight there); crying and the nearest cry, she follows it; once known she
    remembers it out of view. Over whole episodes her senses cost her babies, not herself."""
    from worlds.nursery.core import DOWN, RIGHT

    core = make_core(n_mothers=1, height=12, width=12, view_radius=2)
    sensing, omniscient = SCRIPTED["expert-senses"](core), SCRIPTED["expert"](core)
    seen = scenario(core, mothers=[(2, 2)], babies=[(2, 4)], t=30)
    assert sensing.act(seen)[0, 0] == RIGHT == omniscient.act(seen)[0, 0]
    far = scenario(core, mothers=[(2, 2)], babies=[(9, 2)], t=30)
    assert omniscient.act(far)[0, 0] == DOWN
    fresh = SCRIPTED["expert-senses"](core)
    assert not fresh._sense(far)[0].any()  # she has a baby, and no idea where
    crying = scenario(core, mothers=[(2, 2)], babies=[(9, 2)], hunger=[20], t=30)
    assert fresh.act(crying)[0, 0] == DOWN  # the cry leads her
    assert fresh._sense(far)[0].all()  # quiet again: she remembers where the cry came from
    forgetful = SCRIPTED["expert-senses-no-memory"](core)
    assert forgetful.act(crying)[0, 0] == DOWN and not forgetful._sense(far)[0].any()  # no memory

    # Hearing only the nearest cry and no newborn's, her senses cost her babies, not herself; hearing
    # every cry and the newborns' (the selective world) she finds hers as soon as the omniscient expert.
    # (120 episodes to tell 0.21 apart; 60 to see the same episodes end alike)
    for settings, costs, episodes in (({"hearing": "marked", "newborn_cry": 0}, True, 120), ({}, False, 60)):
        world = NurseryCore(build_config(NurseryConfig, {"preset": "selective", **settings}))
        senses = evaluate(world, SCRIPTED["expert-senses"](world), episodes, seed=2)
        full = evaluate(world, SCRIPTED["expert"](world), episodes, seed=2)
        assert (senses["baby_survival_ci95"][1] < full["baby_survival_ci95"][0]) == costs, settings
        assert senses["baby_survival_rate"] >= full["baby_survival_rate"] - (0.25 if costs else 0.03)
        assert senses["mother_survival_rate"] >= 0.95 and senses["orphan_survival_rate"] < 0.1


def test_babies_born_anywhere_land_on_every_floor_cell_alike():
    """The birth cell is the k-th floor cell for a uniform k: its rank among the world's floor cells is
    uniform, the first and the last floor cell included (an off-by-one would never pick one of them)."""
    core = NurseryCore(NurseryConfig(birth_place="anywhere", birth_step=0, n_mothers=2))
    s, _ = core.reset(torch.arange(3000))
    rows, cols = core.interior
    floor = (s.cells[rows, cols] == 0).T  # (B, L)
    cell = (s.baby_pos[0] * core.W + s.baby_pos[1]).T  # (B, A)
    at = (rows * core.W + cols)[None, None] == cell[..., None]  # (B, A, L)
    assert (at.float().sum(-1) == 1).all() and (at & floor[:, None]).any(-1).all()
    rank = (floor.long().cumsum(-1)[:, None] * at).sum(-1) - 1  # (B, A) among the floor cells
    share = (rank.float() + 0.5) / floor.sum(-1, keepdim=True)
    quarters = torch.histc(share, bins=4, min=0.0, max=1.0) / share.numel()
    assert (quarters - 0.25).abs().max() < 0.03
    assert (rank == 0).any() and (rank == floor.sum(-1, keepdim=True) - 1).any()


def test_the_comparator_ablation_measures_her_untreated_and_changes_nothing_a_silent_comparator_says():
    """`caring probe`'s comparator section: its untreated numbers are her evaluation's on the same
    episodes; mean-ablating a comparator whose output never varies changes nothing; ablating one that
    does changes what she does, and leaves no hook behind."""
    from analysis.circuits import ProbeSettings, comparator_ablation
    from analysis.probes import activations
    from caring.networks import MotherNet
    from caring.policies import TrainedMother
    from caring.tasks import get_task

    task = get_task("nursery")
    core = NurseryCore(build_config(NurseryConfig, {"preset": "selective", "max_cycles": 60}))
    torch.manual_seed(0)
    net = MotherNet(core.obs_dim, 9, 16, kin_match=2, markers=core.marker_inputs())
    settings = ProbeSettings(episodes=4, instances=2, seed=5)
    _, obs = core.reset(torch.arange(4))
    obs = obs.reshape(-1, core.obs_dim)
    reference = activations(net, obs)["hook_kin_match"]
    with torch.no_grad():
        before = net(obs)[0]
    found = comparator_ablation(task, core, net, settings, reference)
    mine = task.evaluate(core, TrainedMother(net), settings.episodes, settings.seed + 2)
    assert found["untreated"]["own_baby_survival"] == mine["baby_survival_rate"]
    assert found["untreated"]["mother_survival"] == mine["mother_survival_rate"]
    with torch.no_grad():
        assert torch.equal(net(obs)[0], before)  # no hook left behind
        from analysis.hooks import ablate

        with ablate(net, "hook_kin_match", None, "mean", reference):
            assert not torch.equal(net(obs)[0], before)  # this comparator's output matters to her
        net.kin_match_2.weight.zero_()
        net.kin_match_2.bias.fill_(0.3)  # a comparator that says the same of every marker
    silent = comparator_ablation(task, core, net, settings, activations(net, obs)["hook_kin_match"])
    assert silent["ablated"] == silent["untreated"]
