"""`caring sweep`: a tiny grid runs, resumes without redoing finished cells, and bad files are rejected
before anything runs. Also the statistics it reports."""

import csv
import json

import numpy as np
import pytest

from analysis.stats import bootstrap_ci, iqm, summarize
from caring.cli import main

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


def test_a_tiny_sweep_runs_summarises_and_resumes(tmp_path, capsys):
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

    # resume: finished cells are not redone; a lost cell is redone from its run directory
    stamp = (out / "cells" / "ppo__seed0.json").stat().st_mtime_ns
    (out / "cells" / "ppo__seed1.json").unlink()
    capsys.readouterr()
    assert main(["sweep", str(spec), "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "8 cells, 7 already finished" in log and "ppo__seed1" in log and "ppo__seed0" not in log
    assert (out / "cells" / "ppo__seed0.json").stat().st_mtime_ns == stamp
    assert list(csv.DictReader((out / "results.csv").open())) == rows  # same results as before

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


def test_results_json_writes_nan_as_null(tmp_path):
    from caring.files import write_json

    write_json(tmp_path / "x.json", {"steps_to_goal": float("nan"), "cis": (1.0, float("inf"))})
    assert json.loads((tmp_path / "x.json").read_text()) == {"steps_to_goal": None, "cis": [1.0, None]}
