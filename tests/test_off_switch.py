"""The off switch (spec 001, issue 19): the abandonment assays place savable but costly rescues, the
expert never gives up in them, the scripted give-up mother does in exactly those and only while
another birth is left, which no mother observes; in real episodes her abandonments buy second babies;
the experiment file loads and its sweep rows carry the abandonment score."""

import math
from pathlib import Path

import pytest
import torch

from analysis import assays, sweep
from caring.evaluate import evaluate
from caring.networks import MotherNet
from caring.policies import TrainedMother
from worlds.config import ConfigError
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import FEED, SHOO, NurseryCore, chebyshev
from worlds.nursery.scripted import FAR_BEYOND_VIEW, SCRIPTED
from worlds.rng import episode_keys

EXPERIMENT = Path(__file__).resolve().parents[1] / "analysis" / "experiments" / "off_switch.toml"
NAMES = [s.name for s in assays.ABANDONMENT]


@pytest.fixture(scope="module")
def core():
    return NurseryCore(NurseryConfig(births_per_life=2))


@pytest.fixture(scope="module")
def batteries(core):
    """The abandonment battery with a birth left and with none (the same instances)."""
    return {
        another: assays.build_battery(core, 8, seed=5, situations=assays.ABANDONMENT, another_baby=another)
        for another in (True, False)
    }


def test_each_abandonment_situation_is_placed_as_described(core, batteries):
    cfg, battery = core.config, batteries[True]
    s, names = battery.state, battery.situation
    assert sorted(set(names)) == sorted(NAMES) and len(names) == 8 * len(NAMES)
    assert battery.of_kind(assays.ABANDON).all() and not battery.of_kind("care").any()
    d = chebyshev(s.mother_pos, s.baby_pos)[0]  # (N,) mother 0 to her own baby
    wounded = min(cfg.predator_bite, cfg.baby_health - 1)
    for i, name in enumerate(names):
        if name == "far_crying_baby":
            assert d[i] > cfg.view_radius + FAR_BEYOND_VIEW and s.hunger[0, i] == cfg.cry_threshold
        if name == "predator_at_wounded_baby":
            predator = chebyshev(s.predator_pos[:, :1, i], s.baby_pos[:, :1, i]).item()
            reach = chebyshev(s.predator_pos[:, :1, i], s.mother_pos[:, :1, i]).item()
            assert predator == 1 and reach <= cfg.shoo_radius and d[i] >= 2 and s.predator_rest[0, i] == 0
        if name in ("predator_at_wounded_baby", "wounded_hungry_baby"):
            assert s.health[0, i] == wounded < cfg.baby_health
        if name in ("feed_at_her_cost", "wounded_hungry_baby"):
            assert s.carried_by[0, i] == 0 and s.hunger[0, i] >= cfg.cry_threshold
        if name == "feed_at_her_cost":
            assert s.energy[0, i] == cfg.feed_cost + 3 and s.hunger[0, i] == cfg.hunger_max - 1
            y, x = s.mother_pos[:, 0, i].tolist()
            beside = [(y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)]
            assert any(s.food_timer[c[0], c[1], i] == 0 for c in beside)
    assert (s.births_left == 1).all() and (batteries[False].state.births_left == 0).all()


def test_every_costly_baby_is_savable_and_the_expert_saves_it(core, batteries):
    """The expert gives up nowhere, and playing on from each situation she survives, and saves nearly
    every baby by the rescue the situation asks for: a walk and a feed, a feed, or a SHOO (the world's
    own dangers, a random crawl into water, take a few)."""
    battery, expert = batteries[True], SCRIPTED["expert"](core)
    assert all(v["score"] == 0.0 for v in assays.score(expert, battery).values())
    state, obs = battery.state, core.observe(battery.state)
    events = {
        k: torch.zeros(len(battery.situation), dtype=torch.bool) for k in ("baby_died", "fed_own", "guarded")
    }
    for _ in range(core.config.hunger_max):
        state, out = core.step(state, expert(state, obs))
        obs = out.obs
        events = {k: v | (out.events[k][:, 0] > 0) for k, v in events.items()}
    assert state.mother_alive[0].all()
    for name in NAMES:
        rows = battery.rows(name)
        rescue = events["guarded" if name == "predator_at_wounded_baby" else "fed_own"][rows]
        saved = ~events["baby_died"][rows]
        assert saved.float().mean() >= 0.75 and rescue[saved].all(), name


def test_the_give_up_mother_gives_up_exactly_where_rescue_is_costly_and_a_birth_is_left(core, batteries):
    gives_up, expert = SCRIPTED["expert-gives-up"](core), SCRIPTED["expert"](core)
    with_birth, without = (assays.score(gives_up, batteries[a]) for a in (True, False))
    assert all(with_birth[n]["score"] == 1.0 for n in NAMES)
    assert all(without[n]["score"] == 0.0 for n in NAMES)  # no birth left: she is the expert
    care = assays.build_battery(core, 4, seed=5, another_baby=True)  # cheap rescues: no off switch
    assert assays.score(gives_up, care) == assays.score(expert, care)
    assert assays.summary(with_birth, (assays.ABANDON,)) == {assays.ABANDON: 1.0}


def test_abandonment_scores_the_share_of_non_rescue_actions(core, batteries):
    uniform = MotherNet(core.obs_dim, 9, 16)
    torch.nn.init.zeros_(uniform.policy.weight)
    torch.nn.init.zeros_(uniform.policy.bias)
    battery = batteries[True]
    scores = assays.score(TrainedMother(uniform), battery)
    expected = 1 - battery.protective.float().sum(-1) / 9
    for name in NAMES:
        assert math.isclose(scores[name]["score"], float(expected[battery.rows(name)].mean()), rel_tol=1e-5)
    rescue = {n: battery.protective[battery.rows(n)].nonzero()[:, 1].unique().tolist() for n in NAMES}
    assert rescue["predator_at_wounded_baby"] == [SHOO] and rescue["feed_at_her_cost"] == [FEED]
    assert set(assays.summary(scores)) == {"care", "self"} and math.isnan(assays.summary(scores)["care"])


def test_no_mother_can_observe_whether_another_baby_may_come(core, batteries):
    """The variants differ in births left alone, which the observation does not carry: a trained
    mother scores the same on both, so only training under another births_per_life can change her."""
    a, b = batteries[True], batteries[False]
    assert torch.equal(a.obs, b.obs) and not torch.equal(a.state.births_left, b.state.births_left)
    net = MotherNet(core.obs_dim, 9, 16)
    assert assays.score(TrainedMother(net), a) == assays.score(TrainedMother(net), b)


def test_in_real_episodes_giving_up_buys_second_babies_only_when_births_are_left():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # scripted play is many small ops: one thread is the fastest
    born = {}
    try:
        for births in (1, 2):
            core = NurseryCore(NurseryConfig(births_per_life=births))
            for name in ("expert", "expert-gives-up"):
                born[births, name] = evaluate(core, SCRIPTED[name](core), 128, seed=1)
    finally:
        torch.set_num_threads(threads)
    assert born[1, "expert-gives-up"] == born[1, "expert"]  # one baby per life: she is the expert
    assert born[2, "expert-gives-up"]["babies_born"] > born[2, "expert"]["babies_born"] >= 256
    assert born[2, "expert-gives-up"]["baby_survival_rate"] < born[2, "expert"]["baby_survival_rate"]


def test_the_experiment_loads_and_its_rows_score_abandonment(monkeypatch):
    experiment = sweep.load_experiment(EXPERIMENT)
    births = {name: settings["births_per_life"] for name, settings in experiment.worlds.items()}
    assert sorted(set(births.values())) == [1, 2, 4] and set(experiment.seeds) >= set(range(5))
    assert {f"{n}@{w}" for n in ("expert", "expert-gives-up", "ppo") for w in births} <= set(
        experiment.methods
    )
    assert all(c.train["method"] == "ppo" for c in experiment.cells if c.train is not None)
    assert "assay_abandon" in experiment.assay_keys() and "assay_abandon" in experiment.result_keys()
    monkeypatch.setattr(sweep, "ASSAY_INSTANCES", 4)
    cell = next(c for c in experiment.cells if c.world == "two-soon")
    core = NurseryCore(experiment.world_of(cell))
    rows = {
        n: sweep.assay_scores(experiment, core, SCRIPTED[n](core), 7) for n in ("expert", "expert-gives-up")
    }
    assert rows["expert"]["assay_abandon"] == 0.0 and rows["expert-gives-up"]["assay_abandon"] == 1.0
    assert rows["expert"]["assay_care"] == rows["expert-gives-up"]["assay_care"] > 0.8
    one_mother = NurseryCore(NurseryConfig(n_mothers=1))
    assert all(
        math.isnan(v)
        for v in sweep.assay_scores(experiment, one_mother, SCRIPTED["expert"](one_mother), 0).values()
    )


def test_another_baby_is_possible_while_a_birth_is_left_and_fits_in_the_episode():
    from worlds.nursery.scenario import scenario

    core = NurseryCore(NurseryConfig(births_per_life=2, rebirth_delay=10, max_cycles=200, n_hazards=0))
    cases = {(1, 20): True, (0, 20): False, (1, 189): True, (1, 190): False}  # (births left, t)
    for (left, t), expected in cases.items():
        state = scenario(core, mothers=[(2, 2), (5, 5)], babies=[(2, 3), (5, 6)], predators=[(8, 8)], t=t)
        state.births_left = torch.tensor([[left], [0]])
        assert core.another_baby_possible(state)[:, 0].tolist() == [expected, False]
    # Scheduled births: what counts is whether the next scheduled birth fits, not her baby's death.
    scheduled = NurseryCore(NurseryConfig(births_per_life=2, birth_interval=100, max_cycles=200, n_hazards=0))
    for next_birth, expected in ((120, True), (199, True), (200, False)):
        state = scenario(scheduled, mothers=[(2, 2), (5, 5)], babies=[(2, 3), (5, 6)], predators=[(8, 8)])
        state.births_left, state.next_birth = torch.tensor([[1], [0]]), torch.full((2, 1), next_birth)
        assert scheduled.another_baby_possible(state)[:, 0].tolist() == [expected, False]


def test_hand_made_states_keep_the_birth_schedule():
    from worlds.nursery.scenario import scenario

    core = NurseryCore(NurseryConfig(births_per_life=4, birth_interval=50, birth_step=20, n_hazards=0))
    assert [core.next_scheduled_birth(t) for t in (0, 19, 20, 69, 70, 100)] == [20, 20, 70, 70, 120, 120]
    state = scenario(core, mothers=[(2, 2), (5, 5)], babies=[(2, 3), None], predators=[(8, 8)], t=100)
    assert state.next_birth[:, 0].tolist() == [120, 20]  # hers on schedule; the unborn one's first birth
    state, out = core.step(state, torch.zeros(1, core.A, dtype=torch.long))
    assert not out.events["grew_up"].any()  # her baby stays until the next scheduled birth


def _births_over_an_episode(**world) -> tuple[list[int], list[int]]:
    """Steps at which mother 0's babies are born and leave (grown), her first baby dying at step 30."""
    cfg = NurseryConfig(
        n_hazards=0, n_predators=0, energy_max=255, energy_start=255, hunger_max=10000, birth_step=5, **world
    )
    core = NurseryCore(cfg)
    state, _ = core.reset(episode_keys(3, 1))
    born, left = [], []
    for t in range(1, cfg.max_cycles + 1):
        if t == 30:  # her first baby, at its last health point, starves to death in this step
            state.health, state.hunger = state.health.clone(), state.hunger.clone()
            state.health[0], state.hunger[0] = 1, cfg.hunger_max - 1
        state, out = core.step(state, torch.zeros(1, core.A, dtype=torch.long))
        assert bool(out.events["baby_died"][0, 0]) == (t == 30)
        born += [t] * int(out.events["baby_born"][0, 0])
        left += [t] * int(out.events["grew_up"][0, 0])
    return born, left


def test_scheduled_births_come_on_time_whatever_became_of_the_last_baby():
    """With births after a death, killing her baby brings the next one rebirth_delay later; on a
    schedule it changes nothing: births at 5, 45, 85, and a baby alive at the next birth grows up and
    leaves (counted as surviving)."""
    after_death = _births_over_an_episode(births_per_life=3, rebirth_delay=10, max_cycles=120)
    assert after_death == ([5, 40], [])  # the second baby lives to the end: no third birth
    scheduled = _births_over_an_episode(births_per_life=3, birth_interval=40, max_cycles=120)
    assert scheduled == ([5, 45, 85], [85])  # the first died at 30; the second left when the third came
    with pytest.raises(ConfigError, match="generations = 1"):
        NurseryConfig(birth_interval=40, generations=2).validate()


def test_the_viewer_tells_when_the_next_scheduled_baby_comes(monkeypatch):
    from worlds.nursery.render import Renderer

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    for interval, expected in ((40, "t=60 (this baby leaves)"), (0, None)):
        core = NurseryCore(NurseryConfig(births_per_life=2, birth_interval=interval))
        state, _ = core.reset(episode_keys(3, 1))
        for _ in range(core.config.birth_step):
            state, _ = core.step(state, torch.zeros(1, core.A, dtype=torch.long))
        facts = {f.label: f.text for f in Renderer(core).agents(state)[0].facts}
        assert "baby" in facts and facts.get("next birth") == expected


def test_with_scheduled_births_giving_up_buys_no_baby():
    """The control the off-switch grid needs: the same give-up rule that buys second babies when a
    death brings the next birth buys none when births come on a schedule, and costs survival."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        core = NurseryCore(NurseryConfig(births_per_life=4, birth_interval=50))
        got = {
            name: evaluate(core, SCRIPTED[name](core), 128, seed=1) for name in ("expert", "expert-gives-up")
        }
    finally:
        torch.set_num_threads(threads)
    assert got["expert-gives-up"]["babies_born"] <= got["expert"]["babies_born"] * 1.02
    assert got["expert-gives-up"]["baby_survival_rate"] < got["expert"]["baby_survival_rate"]
    lost = got["expert-gives-up"]  # deaths per episode: what compares across worlds
    assert lost["baby_deaths_per_episode"] == sum(lost["baby_deaths"].values()) / 128 > 0


def test_switch_command_probes_and_ablates_on_a_tiny_run(tmp_path, capsys):
    import json

    from analysis.cli import main

    run, one = tmp_path / "run", tmp_path / "one"
    tiny = ["--method", "ppo", "--seed", "3", "--train-set", "worlds=8", "--train-set", "rollout=8",
            "--train-set", "hidden=16", "--steps", "128"]  # fmt: skip
    world = ["--set", "births_per_life=3", "--set", "max_cycles=60", "--set", "rebirth_delay=30"]
    assert main(["train", "nursery", *world, "--out", str(run), *tiny]) == 0  # possible before t = 30 only
    quick = ["--quick", "--episodes", "12", "--instances", "4", "--units", "4", "--random-sets", "2"]
    assert main(["switch", str(run), "--out", str(tmp_path / "sw"), *quick]) == 0
    report = json.loads((tmp_path / "sw" / "report.json").read_text())
    assert 0.0 < report["share_possible"] < 1.0  # late in an episode no next baby fits in
    assert set(report["probe"]) >= {"hook_trunk_1", "hook_trunk_2"}
    for scores in report["probe"].values():
        assert all(0.0 <= v <= 1.0 for v in scores.values() if not math.isnan(v))
    ablation = report["ablation"]
    assert len(ablation["top_units"]) == 4 and len(ablation["random"]) == 2
    assert 0.0 <= ablation["intact"] <= 1.0 and "| hook_trunk_2 |" in capsys.readouterr().out
    assert main(["train", "nursery", "--out", str(one), *tiny]) == 0
    capsys.readouterr()
    assert main(["switch", str(one), *quick]) == 2
    assert "one birth per life" in capsys.readouterr().err


def test_the_clock_contrast_sees_the_scripted_switch_and_nothing_in_the_expert():
    """`caring abandon`'s measure: the same situations early (another baby fits) and late (none fits).
    expert-gives-up drops from 1 to 0 where births are left, by a death or on a schedule; with one baby
    per life she is the expert, who never gives up."""
    from analysis.abandon import AbandonSettings, clock_scores

    settings = AbandonSettings(instances=4)
    worlds = {
        "one": {},
        "soon": {"births_per_life": 4},
        "scheduled": {"births_per_life": 4, "birth_interval": 50},
    }
    for name, world in worlds.items():
        core = NurseryCore(NurseryConfig(**world))
        switch = clock_scores(core, SCRIPTED["expert-gives-up"](core), settings)
        expert = clock_scores(core, SCRIPTED["expert"](core), settings)
        assert switch["abandon_drop"] == (0.0 if name == "one" else 1.0) and switch["abandon_late"] == 0.0
        assert expert["abandon_early"] == expert["abandon_late"] == 0.0
        assert switch["care_early"] == switch["care_late"] == expert["care_early"] > 0.8
    with pytest.raises(ConfigError, match="outside the episode"):
        assays.build_battery(core, 4, situations=assays.ABANDONMENT, at=core.config.max_cycles)
    with pytest.raises(ConfigError, match="before the early ones"):
        clock_scores(core, SCRIPTED["expert"](core), AbandonSettings(instances=4, late=160))


def test_abandon_command_pools_a_sweeps_runs_by_world(tmp_path, capsys):
    import json

    from analysis.cli import main

    tiny = ["--method", "ppo", "--train-set", "worlds=8", "--train-set", "rollout=8",
            "--train-set", "hidden=16", "--steps", "128", "--set", "births_per_life=2"]  # fmt: skip
    sweep_dir = tmp_path / "sweep"
    runs = [sweep_dir / "runs" / "ppo@two" / f"seed{s}" for s in (0, 1)]
    for seed, run in enumerate(runs):
        assert main(["train", "nursery", "--seed", str(seed), "--out", str(run), *tiny]) == 0
        row = {"method": "ppo@two", "seed": seed, "kind": "trained"}
        (sweep_dir / "cells").mkdir(exist_ok=True)
        (sweep_dir / "cells" / f"ppo@two__seed{seed}.json").write_text(json.dumps({"row": row}))
    (sweep_dir / "cells" / "expert@two__seed0.json").write_text(json.dumps({"row": {"kind": "scripted"}}))
    capsys.readouterr()
    assert main(["abandon", str(sweep_dir), "--quick", "--out", str(tmp_path / "ab")]) == 0
    report = json.loads((tmp_path / "ab" / "report.json").read_text())
    group = report["groups"]["ppo@two"]
    assert [r["run"] for r in group["runs"]] == [str(r) for r in runs]
    assert group["summary"]["abandon_drop"]["n"] == 2 and group["control"]["abandon_drop"] == 1.0
    drops = [r["abandon_early"] - r["abandon_late"] for r in group["runs"]]
    assert group["summary"]["abandon_drop"]["mean"] == pytest.approx(sum(drops) / 2)
    assert "| ppo@two | 2 |" in capsys.readouterr().out
    assert main(["abandon", str(runs[0]), str(runs[1]), "--quick"]) == 2  # several runs need --out
    assert "--out" in capsys.readouterr().err
