"""Caring assays, probes, attribution, localization and `caring probe`: each analysis measures what it
says on hand-made cases, and runs end to end on a tiny trained mother."""

import dataclasses
import json
import math
import shutil

import pytest
import torch

from analysis import assays
from analysis.attribution import BABY_CHANNELS, baby_features, integrated_gradients, protective_log_prob
from analysis.circuits import load_run
from analysis.cli import main
from analysis.hooks import ablate
from analysis.localize import ROLES, ablation_curve, ablation_effects, rank_units, role_effects, role_scores
from analysis.probes import baby_facts, collect, fit_and_score, probe_all
from caring.networks import MotherNet
from caring.policies import TrainedMother
from worlds.config import ConfigError, build_config
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import CARRY, FEED, SHOO, VIEW_CHANNELS, NurseryCore, chebyshev
from worlds.nursery.scripted import SCRIPTED

TINY = ["--steps", "256", "--train-set", "worlds=8", "--train-set", "rollout=8", "--train-set", "hidden=16"]
SHORT = ["--set", "max_cycles=80"]  # short episodes keep the end-to-end analyses quick


@pytest.fixture(scope="module")
def core():
    return NurseryCore(NurseryConfig())


@pytest.fixture(scope="module")
def battery(core):
    return assays.build_battery(core, instances=6, seed=3)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "nursery", "--method", "ppo", "--out", str(out), *TINY, *SHORT]) == 0
    return out


def test_every_situation_is_placed_as_described(core, battery):
    s, r = battery.state, core.config.view_radius
    names = battery.situation
    assert len(set(names)) == len(assays.SITUATIONS) >= 10 and len(names) == 6 * len(assays.SITUATIONS)
    assert sum(x.kind == "care" for x in assays.SITUATIONS) >= 8
    d = chebyshev(s.mother_pos, s.baby_pos)[0]  # (N,): mother 0 to her own baby
    own_baby = battery.obs.view(len(names), -1)[:, : core.V * core.V * len(VIEW_CHANNELS)]
    for i, name in enumerate(names):
        if name == "crying_out_of_view":
            assert d[i] > r and s.hunger[0, i] >= core.config.cry_threshold
            assert own_baby[i, VIEW_CHANNELS.index("baby") :: len(VIEW_CHANNELS)].sum() == 0  # not in view
        if name in ("predator_closing", "hungry_baby", "both_hungry"):
            assert s.carried_by[0, i] == 0 and d[i] == 0
        if name == "stranger_by_water":
            assert d[i] > r and chebyshev(s.mother_pos[:, :1], s.baby_pos[:, 1:2])[0, i] == 1
    assert s.mother_alive.all() and s.baby_alive[0].sum() == len(names)


def test_the_protective_actions_really_protect_under_the_world_rules(core, battery):
    """Taking the first protective action in each situation does what the situation asks for."""
    first = {
        "baby_by_water": CARRY,
        "stranger_by_water": CARRY,
        "predator_closing": SHOO,
        "hungry_baby": FEED,
        "both_hungry": FEED,
    }
    rows = [i for i, n in enumerate(battery.situation) if n in first]
    state = battery.state.index(torch.tensor(rows))
    actions = torch.zeros(len(rows), core.A, dtype=torch.int64)
    actions[:, 0] = torch.tensor([first[battery.situation[i]] for i in rows])
    assert battery.protective[rows, actions[:, 0]].all()
    _, out = core.step(state, actions)
    for j, i in enumerate(rows):
        name = battery.situation[i]
        event = {CARRY: "picked_up", SHOO: "guarded", FEED: "fed"}[first[name]]
        assert out.events[event][j, 0] == 1, (name, event)


def test_crying_in_view_is_seen_and_the_water_situation_forbids_dropping_the_baby(core, battery):
    C = len(VIEW_CHANNELS)
    own_baby = battery.obs[:, : core.V * core.V * C][:, VIEW_CHANNELS.index("baby") :: C]
    for i, name in enumerate(battery.situation):
        if name == "crying_in_view":
            assert own_baby[i].sum() > 0
        if name == "mother_beside_water":  # CARRY would put her baby down beside the water
            assert battery.state.carried_by[0, i] == 0 and not battery.protective[i, CARRY]
            assert battery.protective[i].sum() >= 5


def test_situations_follow_the_worlds_rules(core):
    """Hunger, energy and predator distance come from the config, not from the default world."""
    cfg = NurseryConfig(cry_threshold=40, hunger_max=80, energy_max=200, energy_start=100, shoo_radius=3)
    other = assays.build_battery(NurseryCore(cfg), instances=3, seed=0)
    s = other.state
    for i, name in enumerate(other.situation):
        if name in ("hungry_baby", "both_hungry", "crying_in_view", "crying_out_of_view"):
            assert s.hunger[0, i] == 60
        if name == "both_hungry":
            assert s.energy[0, i] == 50
        if name == "hungry_mother_on_food":
            assert s.energy[0, i] == 33
        if name == "predator_closing":
            assert chebyshev(s.mother_pos[:, :1, i : i + 1], s.predator_pos[:, :1, i : i + 1]).item() == 3
    no_predator = assays.build_battery(NurseryCore(NurseryConfig(n_predators=0)), instances=2, seed=0)
    assert "predator_closing" not in no_predator.situation and len(set(no_predator.situation)) == 9


def test_worlds_that_cannot_hold_a_situation_are_refused_clearly():
    with pytest.raises(ConfigError, match="baby_by_water"):  # no water to put a baby beside
        assays.build_battery(NurseryCore(NurseryConfig(n_hazards=0)), instances=2, seed=0)
    eight = NurseryCore(NurseryConfig(n_mothers=8, height=16, width=16))
    assert len(assays.build_battery(eight, instances=2, seed=0, marker="novel").situation) == 20
    with pytest.raises(ConfigError, match="palette"):  # every training marker is worn already
        assays.build_battery(eight, instances=2, seed=0, marker="other")


def test_markers_change_only_the_subject_babys_marker(core, battery):
    novel = assays.build_battery(core, instances=6, seed=3, marker="novel")
    for name in ("mother_pos", "baby_pos", "cells", "hunger", "energy", "carried_by", "kin_marker"):
        assert torch.equal(getattr(battery.state, name), getattr(novel.state, name))
    own = [i for i, n in enumerate(battery.situation) if n != "stranger_by_water"]
    assert torch.equal(battery.state.baby_marker[:, 0, own], battery.state.kin_marker[:, 0, own])
    assert not (novel.state.baby_marker[:, 0, own] == novel.state.kin_marker[:, 0, own]).all(0).any()
    with pytest.raises(ConfigError, match="valid markers"):
        assays.build_battery(core, instances=2, marker="purple")


def test_scores_separate_the_expert_from_the_negligent_and_random_mothers(core, battery):
    expert = assays.score(SCRIPTED["expert"](core), battery)
    negligent = assays.score(SCRIPTED["negligent"](core), battery)
    for name in ("baby_by_water", "predator_closing", "hungry_baby", "both_hungry", "crying_out_of_view"):
        assert expert[name]["score"] == 1.0 and negligent[name]["score"] < 0.5
    assert expert["stranger_by_water"]["score"] == 0.0  # the expert cares for her own baby only
    assert assays.summary(expert)["self"] == 1.0
    uniform = MotherNet(core.obs_dim, 9, 16)
    torch.nn.init.zeros_(uniform.policy.weight)
    scores = assays.score(TrainedMother(uniform), battery)  # uniform policy: share of protective actions
    expected = battery.protective.float().sum(-1) / 9
    for name, value in scores.items():
        assert math.isclose(value["score"], float(expected[battery.rows(name)].mean()), rel_tol=1e-5)


def test_baby_facts_on_a_hand_built_state(core):
    from worlds.nursery.scenario import scenario

    hazards = [(1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (1, 7), (1, 8)]
    s = scenario(
        core,
        mothers=[(5, 5), (9, 9)],
        babies=[(2, 5), (8, 2)],
        hazards=hazards,
        predators=[(9, 3)],
        hunger=[7, 0],
    )
    facts = baby_facts(core, s)
    assert facts["baby_distance"][:, 0].tolist() == [3.0, 7.0]
    assert facts["baby_hunger"][:, 0].tolist() == [7.0, 0.0]
    assert facts["baby_in_danger"][:, 0].tolist() == [1.0, 1.0]  # beside water / predator 1 cell away
    assert facts["predator_near_baby"][:, 0].tolist() == [0.0, 1.0]


def test_linear_probes_find_linear_facts_and_not_shuffled_ones():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 12, generator=g)
    y = x[:, 3] * 2 - x[:, 7]
    assert fit_and_score(x[:1500], y[:1500], x[1500:], y[1500:], "regression") > 0.99
    shuffled = y[:1500][torch.randperm(1500, generator=g)]
    assert fit_and_score(x[:1500], shuffled, x[1500:], y[1500:], "regression") < 0.05
    label = (x[:, 5] > 1.0).float()  # rare class: balanced accuracy, not accuracy
    assert fit_and_score(x[:1500], label[:1500], x[1500:], label[1500:], "classification") > 0.95
    # One class in either split: balanced accuracy does not exist (not a flattering 0.5 or 1.0).
    assert math.isnan(fit_and_score(x[:1500], torch.zeros(1500), x[1500:], label[1500:], "classification"))
    assert math.isnan(fit_and_score(x[:1500], label[:1500], x[1500:], torch.ones(500), "classification"))
    assert math.isnan(fit_and_score(x[:1500], y[:1500], x[1500:], torch.full((500,), 2.0), "regression"))


def test_baby_features_are_exactly_the_baby_channels_and_scalars(core):
    mask = baby_features(core)
    C, VV = len(VIEW_CHANNELS), core.V * core.V
    view = mask[: VV * C].view(VV, C)
    assert all(view[:, VIEW_CHANNELS.index(c)].all() == (c in BABY_CHANNELS) for c in VIEW_CHANNELS)
    assert int(mask[VV * C :].sum()) == 5


def test_integrated_gradients_are_complete_and_find_a_baby_only_net(core, battery):
    torch.manual_seed(0)
    net = MotherNet(core.obs_dim, 9, 16)
    with torch.no_grad():  # the first layer reads baby features only
        net.trunk_1.weight[:, ~baby_features(core)] = 0.0
    result = integrated_gradients(core, net, battery, n_steps=64)
    for entry in result.values():
        assert entry["care_baby_share"] == pytest.approx(1.0) and entry["value_baby_share"] == pytest.approx(
            1.0
        )
        assert entry["care_max_delta"] < 1e-2
    assert 0 < result["baby_by_water"]["input_share"] < 1
    forward = protective_log_prob(net)
    p = forward(battery.obs.float(), battery.protective).exp()
    assert torch.all((p > 0) & (p <= 1))


def test_ablation_ranks_the_one_unit_that_carries_care(core, battery):
    torch.manual_seed(1)
    net = MotherNet(core.obs_dim, 9, 16)
    with torch.no_grad():
        net.policy.weight.zero_()
        net.policy.weight[CARRY, 5] = 3.0  # unit 5 of trunk_2 alone moves a protective logit
    reference = torch.zeros(10, 16)  # ablating to 0 removes unit 5's push towards CARRY
    effects = ablation_effects(net, battery, "hook_trunk_2", reference)
    assert effects[5] > 0 and torch.all(effects[torch.arange(16) != 5] == 0)
    assert rank_units(net, battery, "hook_trunk_2", reference)[0] == 5
    assert rank_units(net, battery, "hook_trunk_2", reference, by="conductance")[0] == 5
    with pytest.raises(ConfigError, match="valid rankings"):
        rank_units(net, battery, "hook_trunk_2", reference, by="vibes")


def test_every_analysis_runs_on_a_tiny_trained_mother(tiny_run):
    task, core, net = load_run(tiny_run)
    with pytest.raises(ConfigError, match="too little probe data"):
        probe_all(net, collect(core, TrainedMother(net), episodes=1, seed=0))
    data = collect(core, TrainedMother(net), episodes=8, seed=0)
    assert data.obs.shape[0] == data.world.shape[0] > 0
    scores = probe_all(net, data)
    assert set(scores["baby_hunger"]) == set(net.hook_points())
    assert all(set(v) == {"trained", "shuffled", "random_net"} for v in scores["baby_hunger"].values())
    small = assays.build_battery(core, instances=2, seed=0)
    curve = ablation_curve(
        core,
        task,
        net,
        small,
        "hook_trunk_1",
        torch.arange(16),
        torch.zeros(4, 16),
        [0, 16],
        random_sets=2,
        episodes=4,
    )
    untouched, everything = curve["points"]
    assert untouched["top"] == untouched["random"][0] == untouched["random"][1]  # k=0 ablates nothing
    assert everything["top"] == everything["random"][0]  # all 16 units, whatever the order


def test_a_unit_that_reaches_nothing_has_no_role_and_the_drops_are_the_scores_differences(core):
    torch.manual_seed(0)
    net = MotherNet(core.obs_dim, 9, hidden=16)
    with torch.no_grad():  # unit 3 of the second layer reaches neither the policy nor the values
        for head in (net.policy, net.value_task, net.value_mat):
            head.weight[:, 3] = 0
    care = assays.build_battery(core, 4, seed=1)
    recognition = {m: assays.build_battery(core, 4, 1, m, assays.RECOGNITIONS) for m in ("kin", "novel")}
    reference = torch.rand(8, 16)
    drops = role_effects(net, "hook_trunk_2", reference, care, recognition)
    assert set(drops) == set(ROLES) and all(d.shape == (16,) for d in drops.values())
    assert all(float(d[3]) == 0.0 for d in drops.values())
    base = role_scores(net, care, recognition)
    with ablate(net, "hook_trunk_2", [5], "mean", reference):
        ablated = role_scores(net, care, recognition)
    assert all(math.isclose(float(drops[r][5]), base[r] - ablated[r], abs_tol=1e-9) for r in ROLES)
    assert any(float(d.abs().sum()) > 0 for d in drops.values())  # the other units do matter


def test_probe_cli_writes_every_figure_and_a_report(tiny_run, tmp_path, capsys):
    out = tmp_path / "probe"
    assert main(["probe", str(tiny_run), "--out", str(out), "--quick", "--sizes", "0", "2"]) == 0
    for name in ("assays.png", "attribution.png", "probes.png", "ablation_curve.png", "report.md"):
        assert (out / name).stat().st_size > 0
    assert (out / "roles.png").stat().st_size > 0
    report = json.loads((out / "report.json").read_text())
    assert {"assays", "attribution", "probes", "roles", "ablation"} <= set(report)
    roles = report["roles"]
    assert {len(v) for v in roles["drops"].values()} == {16} and set(roles["top_units"]) == set(ROLES)
    assert "Roles of the units of hook_trunk_2" in (out / "report.md").read_text()
    assert [p["k"] for p in report["ablation"]["points"]] == [0, 2]
    goal = report["localisation_goal"]  # 2 of 16 units is more than 5%: no size is small enough
    assert goal["sizes"] == [] and goal["met"] is False and 0 <= goal["expert_baby_survival"] <= 1
    assert "Localisation goal" in (out / "report.md").read_text()
    assert "Caring probe" in capsys.readouterr().out


def test_the_localisation_goal_needs_a_small_set_that_drops_her_babies_and_nothing_else():
    from analysis.localize import localisation_goal

    def point(k, baby, mother, randoms):
        return {"k": k, "top": {"baby_survival": baby, "mother_survival": mother},
                "random": [{"baby_survival": r} for r in randoms]}  # fmt: skip

    intact = point(0, 0.7, 0.9, [])
    good = point(4, 0.2, 0.88, [0.69, 0.65, 0.5])  # 4 of 128 units; random median move 0.05
    curve = {"units": 128, "points": [intact, good, point(16, 0.0, 0.2, [0.6])]}
    goal = localisation_goal(curve, expert=0.8)
    assert [row["k"] for row in goal["sizes"]] == [4]  # 16 of 128 is over 5%: not judged
    assert goal["met"] and goal["strong_before"]
    assert goal["sizes"][0]["random_sets_largest_move"] == pytest.approx(0.2)
    for broken in (
        point(4, 0.3, 0.88, [0.69]),  # her babies still get 0.3 / 0.8 = 37.5% of the expert's
        point(4, 0.2, 0.8, [0.69]),  # she herself survives 10 points less
        point(4, 0.2, 0.88, [0.5, 0.55, 0.69]),  # random sets of that size move it 0.15 (median)
    ):
        assert not localisation_goal({**curve, "points": [intact, broken]}, expert=0.8)["met"]
    assert not localisation_goal(curve, expert=0.9)["met"]  # 0.7 is under 80% of 0.9: not strong
    with pytest.raises(ConfigError, match="include 0"):
        localisation_goal({**curve, "points": [good]}, expert=0.8)


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda p, tiny: None, [], "not a run directory"),
        (lambda p, tiny: shutil.copy(tiny / "config.json", p), [], "no trained mother"),
        (None, ["--site", "hook_nope"], "hidden layer"),
        (None, ["--ranking", "vibes"], "ranking"),
        (None, ["--sizes", "999"], "at most"),
        (None, ["--expert", "nobody"], "unknown --expert"),
    ],
)
def test_probe_cli_refuses_bad_input_in_one_line(tiny_run, tmp_path, capsys, make, args, message):
    run = tiny_run
    if make is not None:
        run = tmp_path / "run"
        run.mkdir()
        make(run, tiny_run)
    assert main(["probe", str(run), "--out", str(tmp_path / "o"), "--quick", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("caring: error:") and message in err and "\n" not in err


def test_probe_refuses_a_lava_run(tmp_path, capsys):
    run = tmp_path / "lava_run"
    assert main(["train", "lava", "--method", "ppo", "--out", str(run), *TINY]) == 0
    assert main(["probe", str(run), "--out", str(tmp_path / "o"), "--quick"]) == 2
    assert "nursery run" in capsys.readouterr().err


def test_foster_world_places_babies_anywhere(core):
    anywhere = NurseryCore(NurseryConfig(birth_place="anywhere", birth_step=0))
    s, _ = anywhere.reset(torch.arange(400))
    far = chebyshev(s.mother_pos, s.baby_pos) > 1
    assert far.float().mean() > 0.5 and (anywhere._at(s.cells, s.baby_pos) == 0).all()
    beside, _ = NurseryCore(NurseryConfig(birth_step=0)).reset(torch.arange(400))
    assert (chebyshev(beside.mother_pos, beside.baby_pos) <= 1).all()
    # Birth places draw from their own random stream: the rest of the world is the same either way.
    for name in ("cells", "mother_pos", "predator_pos", "kin_marker", "baby_marker", "food_timer"):
        assert torch.equal(getattr(s, name), getattr(beside, name)), name


# ---------------------------------------------------------------------------- retargeting
def test_paired_observations_differ_only_in_the_baby_marker_channels(tiny_run):
    from analysis.retarget import paired_observations

    _, core, net = load_run(tiny_run, world={"baby_markers": "novel"})
    foster, kin = paired_observations(core, net, episodes=4, seed=0)
    C = len(VIEW_CHANNELS)
    view = core.V * core.V * C
    changed = (foster != kin).nonzero()[:, 1]
    assert changed.numel() > 0 and (changed < view).all()
    channels = {VIEW_CHANNELS[int(i) % C] for i in changed}
    assert channels <= {"baby_marker_r", "baby_marker_g", "baby_marker_b"}


def test_the_steering_vector_is_the_mean_activation_difference(tiny_run):
    from analysis.hooks import cache
    from analysis.retarget import paired_observations, steering_vector

    _, core, net = load_run(tiny_run, world={"baby_markers": "novel"})
    foster, kin = paired_observations(core, net, episodes=2, seed=1)
    vector = steering_vector(net, "hook_trunk_1", foster, kin)
    with cache(net, ["hook_trunk_1"]) as acts:
        net(kin)
        on_kin = acts["hook_trunk_1"].mean(0)
        net(foster)
        on_foster = acts["hook_trunk_1"].mean(0)
    assert torch.allclose(vector, on_kin - on_foster, atol=1e-6)


def test_patching_every_unit_acts_as_if_the_foster_baby_wore_the_kin_marker(tiny_run):
    from analysis.retarget import PatchedMother, as_kin

    _, core, net = load_run(tiny_run, world={"baby_markers": "novel"})
    state, obs = core.reset(torch.arange(16))
    for _ in range(30):  # past the births
        state, out = core.step(state, TrainedMother(net)(state, obs))
        obs = out.obs
    kin_obs = core.observe(as_kin(state))
    assert not torch.equal(kin_obs, obs)
    everything = PatchedMother(net, core.config, "hook_trunk_2", list(range(16)))
    assert torch.equal(everything(state, obs), TrainedMother(net)(state, kin_obs))
    nothing = PatchedMother(net, core.config, "hook_trunk_2", [])
    assert torch.equal(nothing(state, obs), TrainedMother(net)(state, obs))


def _check_target_edit(core, net) -> None:
    """The fitted edit changes only each kin-reading layer's kin columns and bias, reads each training
    marker as its foster marker up to the reported residual, and is undone however the block ends."""
    from analysis.retarget import edited, kin_readers, target_edit

    delta, residual = target_edit(net, core)
    kin, novel = core.train_markers.float() / 255, core.novel_markers.float() / 255
    readers = kin_readers(net, core)
    saved = [(layer.weight.detach().clone(), layer.bias.detach().clone()) for layer, _ in readers]
    before = [
        w[:, cols] @ novel + b[:, None] for (w, b), (_, cols) in zip(saved, readers, strict=True)
    ]  # (units, P)
    read = {id(p) for layer, _ in readers for p in (layer.weight, layer.bias)}
    others = {n: p.detach().clone() for n, p in net.named_parameters() if id(p) not in read}
    assert others  # the policy head, the critics, the trunk's second layer...
    misses, wanted = [], []
    with edited(net, core, delta, 1.0):
        for (layer, cols), (w, _), was in zip(readers, saved, before, strict=True):
            after = layer.weight[:, cols].detach() @ kin + layer.bias.detach()[:, None]
            untouched = [c for c in range(layer.in_features) if c not in cols]
            assert torch.equal(layer.weight[:, untouched], w[:, untouched])
            misses.append((after - was).flatten())
            wanted.append((w[:, cols] @ (novel - kin)).flatten())
        assert all(torch.equal(p, others[n]) for n, p in net.named_parameters() if n in others)
    assert math.isclose(float(torch.cat(misses).norm() / torch.cat(wanted).norm()), residual, rel_tol=1e-3)
    assert 0 < residual < 1  # better than no edit (residual 1), and inexact: eight pairs, four numbers
    with pytest.raises(RuntimeError), edited(net, core, delta, 3.0):
        raise RuntimeError("interrupted")
    for (layer, _), (w, b) in zip(readers, saved, strict=True):
        assert torch.equal(layer.weight, w) and torch.equal(layer.bias, b)


def test_the_target_edit_reads_each_training_marker_as_its_foster_marker_and_is_undone(tiny_run):
    from analysis.retarget import kin_marker_inputs, kin_readers

    _, core, net = load_run(tiny_run)
    state, _ = core.reset(torch.arange(2))
    moved = dataclasses.replace(state, kin_marker=(state.kin_marker.long() + 7).to(torch.uint8))
    changed = (core.observe(moved)[:, 0] != core.observe(state)[:, 0]).nonzero()[:, 1].unique()
    assert changed.tolist() == kin_marker_inputs(core)  # her kin marker's three inputs, nothing else
    assert [layer for layer, _ in kin_readers(net, core)] == [net.trunk_1]
    _check_target_edit(core, net)


def test_the_target_edit_also_rewrites_the_marker_comparators_kin_inputs():
    from analysis.retarget import kin_readers

    core = NurseryCore(build_config(NurseryConfig, {"preset": "selective"}))
    torch.manual_seed(0)
    net = MotherNet(core.obs_dim, 9, 16, kin_match=2, markers=core.marker_inputs())
    assert [layer for layer, _ in kin_readers(net, core)] == [net.trunk_1, net.kin_match_1]
    _check_target_edit(core, net)


def test_the_imprint_makes_her_look_for_her_markers_new_partner_exactly():
    from analysis.retarget import imprint_shift, imprinted, kin_marker_inputs, kin_readers

    core = NurseryCore(build_config(NurseryConfig, {"preset": "selective"}))
    torch.manual_seed(0)
    net = MotherNet(core.obs_dim, 9, 16, kin_match=2, markers=core.marker_inputs())
    state, obs = core.reset(torch.arange(3))
    obs = obs.reshape(-1, core.obs_dim)  # (B * A, obs_dim)
    kin = state.kin_marker.long()  # (3, A, B): each mother's training marker...
    which = (kin[..., None] == core.train_markers.long()[:, None, None, :]).all(0).int().argmax(-1)  # (A, B)
    partner = core.novel_markers[:, which]  # ... and its never-seen partner
    looks_for_new = core.observe(dataclasses.replace(state, kin_marker=partner)).reshape(-1, core.obs_dim)
    assert not torch.equal(looks_for_new, obs)
    shift = imprint_shift(core)
    with torch.no_grad():
        untouched = net(obs)[0]
        with imprinted(net, core, shift, 0.0):
            assert torch.equal(net(obs)[0], untouched)
        with imprinted(net, core, shift, 1.0):  # at c = 1 she reads her kin marker as its partner
            imprinted_logits = net(obs)[0]
        torch.testing.assert_close(imprinted_logits, net(looks_for_new)[0], rtol=0, atol=1e-5)
        assert torch.equal(net(obs)[0], untouched)  # the hook left with the block
        # For the mothers of one marker it is a bias edit of every layer that reads her kin marker.
        mine = (which.T.reshape(-1) == int(which[0, 0])).nonzero()[:, 0]  # (rows of that marker)
        readers = kin_readers(net, core)
        saved = [layer.bias.detach().clone() for layer, _ in readers]
        for layer, columns in readers:
            layer.bias += 0.5 * layer.weight[:, columns] @ shift[int(which[0, 0])]
        biased = net(obs[mine])[0]
        for (layer, _), bias in zip(readers, saved, strict=True):
            layer.bias.copy_(bias)
        with imprinted(net, core, shift, 0.5):
            torch.testing.assert_close(net(obs[mine])[0], biased, rtol=0, atol=1e-5)
        # A row whose kin marker is none of the palette (an empty slot) is left alone.
        empty = obs[:1].clone()
        empty[:, kin_marker_inputs(core)] = 0
        alone = net(empty)[0]
        with imprinted(net, core, shift, 1.0):
            assert torch.equal(net(empty)[0], alone)


def test_the_dose_is_chosen_for_the_new_baby_without_harming_her_or_by_the_worse_baby():
    from analysis.retarget import RetargetSettings, Study, _best

    def row(c, new, own, her):
        return {"coefficient": c, "foster": {"baby_survival": new, "mother_survival": her},
                "own": {"baby_survival": own}}  # fmt: skip

    dose = [row(0, 0.1, 0.5, 0.60), row(1, 0.45, 0.1, 0.58), row(2, 0.5, 0.05, 0.50), row(4, 0.45, 0.3, 0.7)]

    def chosen(select, her_before=0.6, rows=dose):
        study = Study(None, None, RetargetSettings(select=select), *([None] * 6), her_before)
        return _best(study, rows, "coefficient")["coefficient"]

    assert chosen("new") == 1  # c = 2 saves more new babies but costs her 10 points; c = 4 ties c = 1...
    assert chosen("new", rows=[*dose[:3], row(4, 0.45, 0.3, 0.7), row(3, 0.45, 0.3, 0.7)]) == 1  # smallest
    assert chosen("new", her_before=0.9) == 4  # none within 5 points: the one that costs her least
    assert chosen("worse") == 4  # the worse of the two babies: 0.3 at c = 4
    with pytest.raises(ConfigError, match="select"):
        RetargetSettings(select="best").validate()


@pytest.mark.parametrize("method", ["steer", "patch", "rewrite", "imprint", "finetune"])
def test_retarget_cli_reports_the_keys_researchers_read(tiny_run, tmp_path, capsys, method):
    out = tmp_path / method
    budget = ["--finetune-steps", "2048"]  # 16 updates of the tiny run's 128 agent-steps
    argv = ["retarget", str(tiny_run), "--out", str(out), "--method", method, "--quick", "--json", *budget]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    for key in ("new_baby_survival_before", "new_baby_survival_after", "own_baby_survival_after",
                "mother_survival_change", "method"):  # fmt: skip
        assert key in printed
    assert printed["method"] == method
    report = json.loads((out / "report.json").read_text())
    assert report["new_baby_survival_after"] == printed["new_baby_survival_after"]
    assert {"foster", "own", "foster_transfer", "own_transfer"} <= set(report["after"])
    if method in ("steer", "rewrite", "imprint"):
        assert [row["coefficient"] for row in report["dose_response"]] == [0.0, 2.0]
        assert len(report["dose_response"][0]["random"]) == 1
    if method == "rewrite":
        assert 0 < report["edit_residual"] < 1 and len(report["edited_inputs"]) == 3
    if method == "imprint":
        assert report["shift_norm"] > 0 and len(report["edited_inputs"]) == 3
    assert report["goal_met"] == all(part["met"] is not False for part in report["goal"].values())
    assert (report["goal"]["control_gain"]["met"] is None) == (method == "finetune")
    if method != "finetune":  # a random intervention of the same dose, on the same test episodes
        assert len(report["controls"]) == 1 and 0 <= report["new_baby_survival_control"] <= 1
    if method == "finetune":
        assert [p["agent_steps"] for p in report["finetune_curve"]] == sorted(
            p["agent_steps"] for p in report["finetune_curve"]
        )


def test_the_retargeting_goal_is_judged_part_by_part_against_her_untreated_care():
    from analysis.retarget import goal_parts

    good = {
        "own_baby_survival_before": 0.5, "new_baby_survival_before": 0.1, "new_baby_survival_after": 0.45,
        "own_baby_survival_after": 0.5, "mother_survival_change": -0.02, "new_baby_survival_control": 0.12,
        "new_baby_transfer_survival_before": 0.1, "new_baby_transfer_survival_after": 0.4,
    }  # fmt: skip
    assert all(part["met"] for part in goal_parts(good).values())
    # Care for her own baby falling does not count as care moving: shares are of her untreated care.
    assert goal_parts(good | {"new_baby_survival_after": 0.3, "own_baby_survival_after": 0.3})[
        "new_baby_share_after"
    ] == {"value": pytest.approx(0.6), "bar": ">= 0.8", "met": False}
    for broken, part in (
        ({"new_baby_survival_before": 0.2}, "new_baby_share_before"),  # not selective: nothing to move
        ({"mother_survival_change": 0.08}, "mother_survival_change"),  # either way
        ({"new_baby_survival_control": 0.2}, "control_gain"),
        ({"new_baby_transfer_survival_after": 0.3}, "transfer_kept"),  # 0.2 of 0.35 kept
    ):
        parts = goal_parts(good | broken)
        assert [name for name, p in parts.items() if not p["met"]] == [part]
    without = goal_parts({k: v for k, v in good.items() if k != "new_baby_survival_control"})
    assert without["control_gain"] == {"value": None, "bar": "<= 0.05", "met": None}  # fine-tuning: none


def test_retarget_refuses_bad_input_in_one_line(tiny_run, tmp_path, capsys):
    for args, message in (
        (["--method", "telepathy"], "method"),
        (["--site", "hook_logits"], "hidden layer"),
        (["--coefficients"], "expected at least one"),
    ):
        assert main(["retarget", str(tiny_run), "--out", str(tmp_path / "o"), "--quick", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("caring: error:") and message in err and "\n" not in err


def test_retargeting_several_runs_pools_their_babies(tiny_run, tmp_path, capsys):
    other_run = tmp_path / "other"
    argv = ["train", "nursery", "--method", "ppo", "--seed", "1", "--out", str(other_run), *TINY, *SHORT]
    assert main(argv) == 0
    capsys.readouterr()
    out = tmp_path / "pooled"
    argv = ["retarget", str(tiny_run), str(other_run), "--out", str(out), "--quick", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    runs = [json.loads((out / f"run{i}" / "report.json").read_text()) for i in (0, 1)]
    assert summary["runs"] == [str(tiny_run), str(other_run)]
    assert (out / "run1" / "dose_response.png").exists()
    # Survival pooled over every baby born in either run; the mother's change averaged over runs.
    born = [r["after"]["foster"]["babies"] for r in runs]
    alive = sum(r["after"]["foster"]["baby_survival"] * b for r, b in zip(runs, born, strict=True))
    assert summary["new_baby_survival_after"] == pytest.approx(alive / sum(born))
    changes = [r["mother_survival_change"] for r in runs]
    assert summary["mother_survival_change"] == pytest.approx(sum(changes) / 2)
    lo, hi = summary["new_baby_survival_after_ci95"]
    assert lo <= summary["new_baby_survival_after"] <= hi
    assert main(argv) == 0  # again: both finished reports are reused, and the summary is the same
    again = capsys.readouterr()
    assert again.err.count("reused") == 2 and json.loads(again.out) == summary
    from analysis.circuits import finished_report
    from analysis.cli import QUICK_RETARGET
    from analysis.retarget import RetargetSettings

    quick = RetargetSettings(**QUICK_RETARGET)
    assert finished_report(other_run, out / "run1", quick) is not None
    assert finished_report(tiny_run, out / "run1", quick) is None  # another run's report
    assert finished_report(other_run, out / "run1", dataclasses.replace(quick, episodes=9)) is None


def test_the_same_seed_gives_the_same_retargeting_report(tiny_run, tmp_path):
    from analysis.retarget import RetargetSettings, run_retarget

    settings = RetargetSettings(
        episodes=8, vector_episodes=2, random_vectors=1, coefficients=(0.0, 1.0), transfer_size=12
    )
    first = run_retarget(tiny_run, tmp_path / "a", settings)
    assert run_retarget(tiny_run, tmp_path / "b", settings) == first
    assert (tmp_path / "a" / "report.json").read_bytes() == (tmp_path / "b" / "report.json").read_bytes()


def test_patching_the_whole_layer_has_no_random_control(tiny_run, tmp_path):
    """A random set of every unit is the same set: a 'control' would equal the treatment."""
    from analysis.retarget import RetargetSettings, run_retarget

    settings = RetargetSettings(method="patch", units=(16,), episodes=8, vector_episodes=2, transfer_size=12)
    report = run_retarget(tiny_run, tmp_path / "p", settings)
    assert report["chosen_units"] == 16 and "controls" not in report
    with pytest.raises(ConfigError, match="at most the layer's 16 units"):
        run_retarget(tiny_run, tmp_path / "q", dataclasses.replace(settings, units=(4, 17)))
    with pytest.raises(ConfigError, match="positive"):
        run_retarget(tiny_run, tmp_path / "q", dataclasses.replace(settings, units=(0,)))


def test_finetuning_starts_from_her_weights_and_reports_when_it_reached_the_goal(tiny_run, tmp_path):
    from safetensors.torch import load_file

    from analysis.retarget import GOAL, RetargetSettings, run_retarget

    saved = (tiny_run / "mother.safetensors").read_bytes()
    settings = RetargetSettings(
        method="finetune", episodes=8, finetune_steps=2048, finetune_checks=2, transfer_size=12
    )
    report = run_retarget(tiny_run, tmp_path / "ft", settings)
    assert (tiny_run / "mother.safetensors").read_bytes() == saved  # her own run is left as it was
    hers = load_file(str(tiny_run / "mother.safetensors"))
    tuned = load_file(str(tmp_path / "ft" / "finetune" / "mother.safetensors"))
    fresh = MotherNet(hers["trunk_1.weight"].shape[1], 9, 16).state_dict()
    moved = sum(float((tuned[k] - hers[k]).norm()) for k in hers)
    assert 0 < moved < 0.5 * sum(float((fresh[k] - hers[k]).norm()) for k in hers)  # tuned from hers
    curve = report["finetune_curve"]
    assert len(curve) == 2 and curve[0]["agent_steps"] < curve[1]["agent_steps"]
    goal = GOAL * report["own_baby_survival_untreated_selection"]
    reached = [p["agent_steps"] for p in curve if p["baby_survival"] >= goal]
    assert report["steps_to_goal"] == (reached[0] if reached else None)
