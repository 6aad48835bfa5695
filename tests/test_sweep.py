"""`caring sweep`: a tiny grid runs, resumes without redoing finished cells, re-evaluates finished cells
without retraining, and bad files are rejected before anything runs. Also the statistics it reports:
assays, feedback budget, steps to near the expert, held-out drops."""

import csv
import dataclasses
import io
import json
import math

import numpy as np
import pytest

from analysis import sweep, sweep_plots
from analysis.cli import main
from analysis.stats import bootstrap_ci, iqm, summarize
from caring.files import write_json
from caring.policies import TrainedMother
from caring.runs import load_mother, weaning_mother
from caring.tasks import get_task
from worlds.config import build_config
from worlds.nursery.config import NurseryConfig

TINY = """
world = "nursery"
seeds = [0, 1]
eval_episodes = 8
scripted = ["expert", "negligent"]
[world_settings]
max_cycles = 40
[train]
steps = 256
worlds = 8
rollout = 8
hidden = 16
demo_episodes = 3
[methods.ppo]
method = "ppo"
[methods.rlmf-exp]
method = "rlmf"
beta_schedule = "exp"
"""


def test_a_worlds_grid_trains_and_evaluates_every_method_in_each_world(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "ASSAY_INSTANCES", 4)
    spec = tmp_path / "grid.toml"
    grid = "[worlds]\nsmall = {height = 9, width = 9, n_walls = 2}\nlarge = {height = 14, width = 14}\n"
    spec.write_text(
        TINY.replace("seeds = [0, 1]", "seeds = [0]").replace("[methods.rlmf-exp]", grid + "[methods.x]")
    )
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    rows = {r["method"]: r for r in csv.DictReader((out / "results.csv").open())}
    labels = [f"{m}@{w}" for w in ("small", "large") for m in ("expert", "negligent", "ppo", "x")]
    assert sorted(rows) == sorted(labels)
    for w, size in (("small", 9), ("large", 14)):
        world = json.loads((out / "runs" / f"ppo@{w}" / "seed0" / "config.json").read_text())["world"]
        assert (world["height"], world["width"], world["max_cycles"]) == (
            size,
            size,
            40,
        )  # grid over settings
    assert rows["negligent@small"]["baby_survival_rate"] != rows["negligent@large"]["baby_survival_rate"]
    summary = (out / "summary.md").read_text()
    assert "| ppo@large | 1 |" in summary
    # The grid's own tables: a row per world, a column per method, the cell's value in its place.
    table = summary[summary.index("baby survival, by world:") :].split("\n\n")[1].splitlines()
    assert table[0] == "| world | expert | negligent | ppo | x |"
    expected = float(rows["negligent@large"]["baby_survival_rate"])
    assert table[3].startswith("| large | ") and f"| {expected:.3f} [" in table[3]
    assert "abandonment assays (P gives up), by world:" in summary
    assert (out / "across_worlds.png").stat().st_size > 10_000
    bad = spec.read_text().replace("large = {height = 14, width = 14}", "large = {height = 99}")
    spec.write_text(bad)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "bad")]) == 2
    assert "worlds.large: height=99 is out of range" in capsys.readouterr().err


def test_a_larger_budget_trains_a_finished_run_on_as_if_it_had_had_it_from_the_start(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(sweep, "ASSAY_INSTANCES", 4)
    one = TINY.replace("seeds = [0, 1]", "seeds = [0]").replace(
        'scripted = ["expert", "negligent"]', "scripted = []"
    )
    one = one[: one.index("[methods.rlmf-exp]")]
    spec, whole = tmp_path / "grown.toml", tmp_path / "whole.toml"
    spec.write_text(one)
    whole.write_text(one.replace("steps = 256", "steps = 512"))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "grown")]) == 0
    spec.write_text(whole.read_text())  # the budget doubled after the cell finished
    assert main(["sweep", str(spec), "--out", str(tmp_path / "grown")]) == 0
    assert main(["sweep", str(whole), "--out", str(tmp_path / "whole")]) == 0
    grown, never = ((tmp_path / d / "results.csv").read_text() for d in ("grown", "whole"))
    assert grown == never and int(next(csv.DictReader(io.StringIO(grown)))["agent_steps"]) == 512
    run = tmp_path / "grown" / "runs" / "ppo" / "seed0"
    assert (run / "metrics.csv").read_text() == (
        tmp_path / "whole" / "runs" / "ppo" / "seed0" / "metrics.csv"
    ).read_text()
    # An annealed learning rate falls over the whole budget: a larger one would not be the same run.
    spec.write_text(one.replace("[methods.ppo]", "[methods.ppo]\nlr_anneal = true"))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "annealed")]) == 0
    spec.write_text(
        one.replace("[methods.ppo]", "[methods.ppo]\nlr_anneal = true").replace("steps = 256", "steps = 512")
    )
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(tmp_path / "annealed")]) == 2
    assert "a larger steps budget alone is fine, except with lr_anneal" in capsys.readouterr().err


def test_a_tiny_sweep_runs_summarises_and_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "ASSAY_INSTANCES", 4)  # a busy 2-core machine: keep the assays tiny
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["method"], r["seed"]) for r in rows] == [
        (m, s) for m in ("expert", "negligent", "ppo", "rlmf-exp") for s in ("0", "1")
    ]
    by = {(r["method"], r["seed"]): r for r in rows}
    assert float(by["expert", "0"]["baby_survival_rate"]) > float(by["negligent", "0"]["baby_survival_rate"])
    assert by["ppo", "1"]["kind"] == "trained" and int(by["ppo", "1"]["agent_steps"]) == 256
    assert float(by["ppo", "0"]["final_beta1"]) == 0.0 and float(by["rlmf-exp", "0"]["final_beta1"]) > 0
    assert by["expert", "0"]["eval_seed"] != by["expert", "1"]["eval_seed"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["expert"]["baby_survival_rate"]["n"] == 2
    assert "| rlmf-exp | 2 |" in (out / "summary.md").read_text()
    speeds = json.loads((out / "speed.json").read_text())["training_agent_steps_per_s_median"]
    assert set(speeds) == {"ppo", "rlmf-exp"} and all(v > 0 for v in speeds.values())  # trained only
    assert (out / "summary_bars.png").stat().st_size > 0 and (out / "learning_curves.png").exists()
    assert (out / "runs" / "rlmf-exp" / "seed1" / "maternal.safetensors").exists()
    assert float(by["expert", "0"]["assay_care"]) > float(by["negligent", "0"]["assay_care"])
    assert 0 <= float(by["ppo", "0"]["assay_self"]) <= 1
    budget = {m: (by[m, "0"]["demo_episodes"], by[m, "0"]["preference_labels"]) for m in ("ppo", "rlmf-exp")}
    assert budget == {"ppo": ("0", "0"), "rlmf-exp": ("3", "0")} and by["expert", "0"]["demo_episodes"] == ""
    assert "steps_to_80pct_expert" in rows[0] and (out / "headline_by_world.png").stat().st_size > 0

    # resume: finished cells are not redone; a lost cell is redone from its run directory
    stamp = (out / "cells" / "ppo__seed0.json").stat().st_mtime_ns
    (out / "cells" / "ppo__seed1.json").unlink()
    capsys.readouterr()
    # --summarize: the tables of the cells finished so far, nothing run
    (out / "summary.md").unlink()
    assert main(["sweep", str(spec), "--out", str(out), "--summarize"]) == 0
    assert (
        "7 of 8 cells finished" in capsys.readouterr().out
        and "| ppo | 1 |" in (out / "summary.md").read_text()
    )
    assert not (out / "cells" / "ppo__seed1.json").exists()
    assert main(["sweep", str(spec), "--out", str(tmp_path / "empty"), "--summarize"]) == 2
    assert "no finished cell" in capsys.readouterr().err
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "8 cells, 7 already finished" in log and "ppo__seed1" in log and "ppo__seed0" not in log
    assert (out / "cells" / "ppo__seed0.json").stat().st_mtime_ns == stamp
    assert list(csv.DictReader((out / "results.csv").open())) == rows  # same results as before

    # new evaluations: finished cells are re-evaluated, trained mothers loaded from runs left untouched
    def files() -> dict:
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "runs").rglob("*") if p.is_file()}

    before = files()
    spec.write_text(
        TINY + "[evaluations.home]\nworld = {}\n[evaluations.fast]\nworld = {predator_speed = 1.0}\n"
    )
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "8 cells, 0 already finished, 8 to re-evaluate" in log and log.count(" re-evaluated:") == 8
    assert files() == before
    again = {(r["method"], r["seed"]): r for r in csv.DictReader((out / "results.csv").open())}
    for key, row in by.items():  # the same mothers on the same episodes
        assert again[key]["home.baby_survival_rate"] == row["baby_survival_rate"]
        assert again[key]["assay_care"] == row["assay_care"]
        fast, home = (float(again[key][f"{e}.baby_survival_rate"]) for e in ("fast", "home"))
        assert float(again[key]["fast.drop_baby_survival_rate"]) == pytest.approx(home - fast)
    assert again["ppo", "1"]["train_baby_survival"] == by["ppo", "1"]["train_baby_survival"]
    assert "baby survival drop (fast)" in (out / "summary.md").read_text()

    # a changed experiment file does not silently reuse runs made with other settings
    (out / "cells" / "ppo__seed1.json").unlink()
    spec.write_text(TINY.replace("hidden = 16", "hidden = 24"))
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    assert "was started with other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        ("seeds = [0]\n[methods.a]\nmethod = 'sarsa'", "methods.a: method: 'sarsa' is not one of"),
        ("seeds = [0]\nbogus = 1\n[methods.a]\nmethod = 'ppo'", "unknown key 'bogus'"),
        ("seeds = []\n[methods.a]\nmethod = 'ppo'", "seeds must be a non-empty list"),
        ("seeds = [0, 0]\n[methods.a]\nmethod = 'ppo'", "seeds repeat"),
        ("seeds = [0]\nscripted = ['saint']", "unknown scripted nursery policy 'saint'"),
        ("seeds = [0]\n[methods.a]\nbeta0 = 2.0", r"beta0=2.0 is out of range"),
        ("seeds = [0]\n[methods.a]\nseed = 3", "seeds come from the seeds list"),
        (
            "seeds = [0]\n[world_settings]\nheight = 3\n[methods.a]\nmethod = 'ppo'",
            "height=3 is out of range",
        ),
        ("world = 'moon'\nseeds = [0]", "unknown world 'moon'"),
        (
            "world = 'lava'\nseeds = [0]\n[world_settings]\nquicksand = 0.5\n[methods.a]\nmethod = 'ppo'",
            "quicksand and the held-out test layouts are for evaluation only",
        ),
        (
            "world = 'lava'\nseeds = [0]\nscripted = ['expert']\n[evaluations.x]\nworld = {wingspan = 2}",
            "evaluations.x: unknown LavaConfig key 'wingspan'",
        ),
        (
            "world = 'lava'\nseeds = [0]\nscripted = ['expert']\n[evaluations.x]\ncolumns = ['baby']",
            "evaluations.x.columns: unknown metric 'baby'",
        ),
        ("world = 'lava'\nseeds = [0]\nscripted = ['negligent']", "unknown scripted lava policy 'negligent'"),
        (
            "world = 'lava'\nseeds = [0]\nscripted = ['expert']\n[evaluations.x]\nworld = {view_radius = 2}",
            "evaluations.x: its observations differ in size from the training world's",
        ),
        (
            "world = 'lava'\nseeds = [0]\nscripted = ['expert']\n[evaluations.x]\ncolumns = []",
            "evaluations.x.columns must be a non-empty list of metrics",
        ),
        (
            "world = 'lava'\nseeds = [0]\nscripted = ['expert']\n[evaluations.x]\nmother = 'grandmother'",
            "evaluations.x.mother: 'grandmother' is not one of final, weaning",
        ),
        (
            "seeds = [0]\npreset = 'hungry'\n[methods.a]\nmethod = 'ppo'",
            "unknown key 'preset'",
        ),
        (
            "seeds = [0]\n[world_settings]\npreset = 'famine'\n[methods.a]\nmethod = 'ppo'",
            "unknown preset 'famine'",
        ),
        ("seeds = [0]", "nothing to run"),
        ("seeds = [0\n", "not valid TOML"),
    ],
)
def test_bad_experiment_files_are_rejected_before_anything_runs(tmp_path, capsys, text, message):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_missing_experiment_file_and_bad_worker_count(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "none.toml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err
    spec = tmp_path / "ok.toml"
    spec.write_text("seeds = [0]\nscripted = ['expert']")
    assert main(["sweep", str(spec), "--workers", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--workers=0 must be at least 1" in capsys.readouterr().err


def test_interquartile_mean_and_bootstrap():
    assert iqm(np.array([0.0, 1.0, 2.0, 3.0, 100.0])) == pytest.approx(2.0)  # 1 cut at each end of 5
    assert iqm(np.array([5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0])) == pytest.approx(4.5)  # middle 4 of 8
    lo, hi = bootstrap_ci([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lo < 0.6 < hi and lo >= 0.2 and hi <= 1.0
    assert bootstrap_ci([0.2, 0.4, 0.6, 0.8, 1.0]) == (lo, hi)  # fixed generator: reproducible
    assert bootstrap_ci([0.5] * 5) == (0.5, 0.5)
    s = summarize([0.1, float("nan"), 0.3])
    assert s["n"] == 2 and s["mean"] == pytest.approx(0.2)


LAVA = """
world = "lava"
seeds = [0, 1]
eval_episodes = 20
scripted = ["expert", "shortcut", "random"]
[train]
steps = 2048
worlds = 16
rollout = 16
hidden = 16
demo_episodes = 4
[methods.rlmf-linear-weaned]
method = "rlmf"
beta_schedule = "linear"
wean_steps = 512
[evaluations.heldout]
world = { split = "test" }
columns = ["success_rate", "lava_episode_rate"]
[evaluations.quicksand]
world = { split = "test", quicksand = 1.0 }
columns = ["quicksand_episode_rate"]
[evaluations.before-weaning]
world = { split = "test" }
columns = ["success_rate"]
mother = "weaning"
"""


def test_a_lava_sweep_evaluates_every_policy_in_every_evaluation_world(tmp_path, capsys):
    spec, out = tmp_path / "lava.toml", tmp_path / "out"
    spec.write_text(LAVA)
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    rows = {(r["method"], r["seed"]): r for r in csv.DictReader((out / "results.csv").open())}
    assert len(rows) == 8
    for seed in ("0", "1"):
        expert, shortcut = rows["expert", seed], rows["shortcut", seed]
        assert (
            float(expert["heldout.success_rate"]) == 1.0 and float(expert["heldout.lava_episode_rate"]) == 0
        )
        assert float(shortcut["heldout.lava_episode_rate"]) == 1.0
        assert float(shortcut["quicksand.quicksand_episode_rate"]) == 1.0
        assert float(shortcut["quicksand.lava_episode_rate"]) == 0.0  # every pool is quicksand there
        trained = rows["rlmf-linear-weaned", seed]
        assert float(trained["final_beta1"]) == 0.0 and int(trained["agent_steps"]) == 2048 + 512
    for name in ("summary.json", "cells/random__seed0.json"):  # strict JSON, never a bare NaN
        json.loads((out / name).read_text(), parse_constant=lambda c, name=name: pytest.fail(f"{name}: {c}"))
    table = (out / "summary.md").read_text()
    assert "episodes touching lava (heldout)" in table and "episodes touching quicksand (quicksand)" in table
    row = rows["rlmf-linear-weaned", "0"]  # no assays in lava; its headline is success
    assert "assay_care" not in row and "steps_to_80pct_expert" in row and row["demo_episodes"] == "4"
    drop = float(row["heldout.success_rate"]) - float(row["quicksand.success_rate"])
    assert float(row["quicksand.drop_success_rate"]) == pytest.approx(drop)
    # before weaning: the weaned run's snapshot from when beta1 went to 0, on the same episodes
    run = out / "runs" / "rlmf-linear-weaned" / "seed0"
    task = get_task("lava")
    core = task.make_core(build_config(task.config_class, {"split": "test"}), "cpu")
    snapshot = weaning_mother(run, agents=1)
    assert snapshot.name == "mother_0000008.safetensors"  # 2048 agent-steps of 256 per update
    for mother, column in (
        (load_mother(run, core, task, snapshot), "before-weaning"),
        (load_mother(run, core, task), "heldout"),
    ):
        result = task.evaluate(core, TrainedMother(mother), 20, int(row["eval_seed"]))
        assert float(row[f"{column}.success_rate"]) == result["success_rate"]
    expert = rows["expert", "0"]  # a scripted policy is the same before and after
    assert expert["before-weaning.success_rate"] == expert["heldout.success_rate"]
    # a weaned run that kept no such mother (trained before runs kept her) is a cell's one-line failure
    snapshot.unlink()
    (out / "cells" / "rlmf-linear-weaned__seed0.json").unlink()
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    assert "kept no mother from when beta1 went to 0" in capsys.readouterr().out


def test_results_json_writes_nan_as_null(tmp_path):
    write_json(tmp_path / "x.json", {"steps_to_goal": float("nan"), "cis": (1.0, float("inf"))})
    assert json.loads((tmp_path / "x.json").read_text()) == {"steps_to_goal": None, "cis": [1.0, None]}


DERIVED = """
seeds = [0, 1, 2]
eval_episodes = 8
scripted = ["expert"]
[methods.ppo]
method = "ppo"
[methods.slow]
method = "ppo"
[evaluations.home]
world = {}
[evaluations.fast]
world = { predator_speed = 1.0 }
"""


def _fake_run(run, survival: list[float]) -> None:
    """A finished run's metrics.csv (one update per 100 agent-steps) and speed.csv."""
    run.mkdir(parents=True)
    with (run / "metrics.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["update", "agent_steps", "beta1", "harm_rate", "baby_survival"])
        writer.writerows([i + 1, 100 * (i + 1), 0.0, 0.0, v] for i, v in enumerate(survival))
    (run / "speed.csv").write_text("update,agent_steps_per_s\n1,1000\n")


def test_steps_to_the_expert_and_held_out_drops_from_hand_made_cells(tmp_path, monkeypatch):
    figures = {}
    keep = sweep_plots.save_figure

    def capture(fig, path):
        figures[path.name] = fig
        return keep(fig, path)

    monkeypatch.setattr(sweep_plots, "save_figure", capture)
    spec, out = tmp_path / "derived.toml", tmp_path / "out"
    spec.write_text(DERIVED)
    experiment = sweep.load_experiment(spec)
    home = {"expert": [1.0, 1.0, 1.0], "ppo": [0.7, 0.6, 0.5], "slow": [0.5, 0.5, 0.5]}
    fast = {"expert": [1.0, 0.9, 1.0], "ppo": [0.4, 0.6, 0.1], "slow": [0.5, 0.5, 0.5]}
    # the expert's mean is 1.0: 80% of it is 0.8, to be reached by 5-update trailing means (NaN skipped)
    curves = {
        ("ppo", 0): [math.nan, 0.5, 1.0, 1.0, 1.0, 1.0],  # .83 at 400 is a partial window: at 500 (raw: 300)
        ("ppo", 1): [0.5] * 6,  # never
        ("ppo", 2): [0.1, 1.0, 1.0, 1.0, 1.0, 1.0],  # means .1, .55, .7, .775, .82: at 500 (raw: 200)
    }
    for cell in experiment.cells:
        row = {"method": cell.method, "seed": cell.seed, "kind": "scripted" if cell.scripted else "trained"}
        row |= {"home.baby_survival_rate": home[cell.method][cell.seed]}
        row |= {"fast.baby_survival_rate": fast[cell.method][cell.seed]}
        row |= {
            "home.harm_events_per_episode": 2.0 * cell.seed + {"expert": 0, "ppo": 1, "slow": 3}[cell.method]
        }
        if cell.train is not None:
            row["agent_steps"] = 600
            _fake_run(sweep.run_dir(cell, out), curves.get((cell.method, cell.seed), [0.5] * 6))
        write_json(out / "cells" / f"{cell.key}.json", {"row": row})

    summary = sweep.write_results(experiment, out)
    rows = {(r["method"], r["seed"]): r for r in csv.DictReader((out / "results.csv").open())}
    reached = [float(rows["ppo", s]["steps_to_80pct_expert"]) for s in "012"]
    assert reached[0] == 500 and math.isnan(reached[1]) and reached[2] == 500
    assert rows["expert", "0"]["steps_to_80pct_expert"] == ""  # only trained cells train
    drops = [home["ppo"][s] - fast["ppo"][s] for s in range(3)]  # per seed: 0.3, 0.0, 0.4
    assert [float(rows["ppo", s]["fast.drop_baby_survival_rate"]) for s in "012"] == pytest.approx(drops)
    paired = summary["ppo"]["fast.drop_baby_survival_rate"]
    assert paired["mean"] == pytest.approx(0.7 / 3) and paired["mean_ci95"] == pytest.approx(
        summarize(drops)["mean_ci95"]
    )
    assert "home.drop_baby_survival_rate" not in rows["ppo", "0"]  # the first evaluation is the reference
    table = (out / "summary.md").read_text()
    assert "| ppo | 3 |" in table and "500 [500, 500] (2/3 seeds)" in table and "never (0/3)" in table
    assert (out / "headline_by_world.png").stat().st_size > 0
    # the Pareto plot: one point per method at (mean harm, mean headline) of the first evaluation
    points = [
        line.get_xydata()[0] for line in figures["pareto.png"].axes[0].lines if line.get_marker() == "o"
    ]
    assert np.allclose(points, [(2.0, 1.0), (3.0, 0.6), (5.0, 0.5)])  # harm: method's + 2 x mean seed (1)

    spec.write_text(DERIVED.replace('scripted = ["expert"]', 'scripted = ["negligent"]'))
    assert "steps_to_80pct_expert" not in sweep.load_experiment(spec).result_keys()  # no expert: no column


def test_feedback_budget_is_read_from_the_run(tmp_path):
    for method, labels, expected in (
        ("rlmf", None, (60, 0)),
        ("ppo", None, (0, 0)),
        ("rlhf", 1200, (0, 1200)),
    ):
        run = tmp_path / method
        run.mkdir()
        world = dataclasses.asdict(NurseryConfig())
        train = {"method": method, "demo_episodes": 60}
        write_json(run / "config.json", {"world_name": "nursery", "world": world, "train": train})
        extra = (",labels", f",{labels // 2}", f",{labels}") if labels else ("", "", "")
        (run / "metrics.csv").write_text(f"update{extra[0]}\n1{extra[1]}\n2{extra[2]}\n")
        budget = sweep.feedback_budget(run)
        assert (budget["demo_episodes"], budget["preference_labels"]) == expected, method


def test_cells_from_before_a_some_worlds_metric_existed_are_not_re_evaluated_for_it(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    experiment = sweep.load_experiment(spec)
    cell = next(c for c in experiment.cells if c.scripted == "expert")
    optional = experiment.task.some_worlds_only
    assert "lineage_length" in optional and "gen2_baby_survival" in optional
    keys = [k for k in experiment.cell_keys(cell) if k not in optional]  # a row written before generations
    write_json(sweep.cell_path(cell, tmp_path), {"row": dict.fromkeys(keys, 0.5), "evaluations": {}})
    assert sweep.missing_keys(cell, experiment, tmp_path) == set()
    write_json(sweep.cell_path(cell, tmp_path), {"row": dict.fromkeys(keys[1:], 0.5), "evaluations": {}})
    assert sweep.missing_keys(cell, experiment, tmp_path) == {keys[0]}  # any other key is still asked


def test_a_metric_the_stored_counts_give_is_filled_in_not_re_evaluated(tmp_path):
    """Baby deaths per episode came after many sweeps ran: a finished cell gets it from its stored
    evaluation's death counts (the same function evaluate uses), in its row and in results.csv."""
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    experiment = sweep.load_experiment(spec)
    cell = next(c for c in experiment.cells if c.scripted == "expert")
    key = experiment.evaluations[0].key("baby_deaths_per_episode")
    keys = [k for k in experiment.cell_keys(cell) if k != key]
    stored = {"episodes": 8, "baby_deaths": {"predator": 3, "hazard": 1, "hunger": 2}}
    write_json(
        sweep.cell_path(cell, tmp_path),
        {"row": dict.fromkeys(keys, 0.5), "evaluations": {experiment.evaluations[0].name: stored}},
    )
    assert sweep.missing_keys(cell, experiment, tmp_path) == set()
    assert sweep.finished_row(experiment, cell, tmp_path)[key] == 6 / 8
    write_json(sweep.cell_path(cell, tmp_path), {"row": dict.fromkeys(keys, 0.5), "evaluations": {}})
    assert sweep.missing_keys(cell, experiment, tmp_path) == {key}  # no counts stored: evaluated again


def test_steps_to_reach_counts_only_the_updates_after_a_warm_up(tmp_path):
    """A warm-up plays an easier world: its survival must not count as reaching the expert's."""
    metrics = tmp_path / "metrics.csv"
    survival = [0.9] * 6 + [0.1] * 6 + [0.9] * 6  # warm-up high, then the run's own world
    rows = "".join(f"{(i + 1) * 100},{v}\n" for i, v in enumerate(survival))
    metrics.write_text("agent_steps,baby_survival\n" + rows)
    assert sweep.steps_to_reach(metrics, "baby_survival", 0.8) == 500
    assert sweep.steps_to_reach(metrics, "baby_survival", 0.8, after=600) == 1700  # a full window after it
    assert math.isnan(sweep.steps_to_reach(metrics, "baby_survival", 0.8, after=1800))


def test_a_second_phase_file_starts_each_seed_from_that_seeds_first_phase(tmp_path):
    """`{seed}` in a sweep file's init_from is each cell's own seed: one file continues every seed."""
    spec = tmp_path / "phase2.toml"
    first = tmp_path / "first" / "runs" / "ppo"
    phase2 = f'demo_episodes = 3\ninit_from = "{first}/seed{{seed}}"'
    spec.write_text(TINY.replace("demo_episodes = 3", phase2))
    experiment = sweep.load_experiment(spec)
    starts = {c.seed: sweep.cell_config(experiment, c).init_from for c in experiment.cells if c.train}
    assert starts == {0: f"{first}/seed0", 1: f"{first}/seed1"}
