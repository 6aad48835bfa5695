"""`caring develop`: a run's snapshots measured one by one, resumable, with clear errors."""

import csv
import json

from analysis import develop as develop_module
from analysis.cli import main

TINY = ["--method", "ppo", "--seed", "3", "--train-set", "worlds=8", "--train-set", "rollout=8",
        "--train-set", "hidden=16"]  # fmt: skip
QUICK = ["--quick", "--episodes", "8", "--probe-episodes", "8", "--instances", "4", "--units", "4"]


def test_develop_measures_every_snapshot_and_continues_where_it_stopped(tmp_path, capsys, monkeypatch):
    run, out = tmp_path / "run", tmp_path / "develop"
    assert main(["train", "nursery", "--steps", str(3 * 128), "--out", str(run), *TINY,
                 "--train-set", "snapshot_every=2"]) == 0  # fmt: skip
    assert main(["develop", str(run), "--out", str(out), *QUICK]) == 0
    rows = list(csv.DictReader((out / "develop.csv").open()))
    assert [int(r["update"]) for r in rows] == [0, 2, 3]  # untrained, a snapshot, the finished mother
    assert [int(r["agent_steps"]) for r in rows] == [0, 256, 384]
    for row in rows:
        for key in (
            "baby_survival",
            "foster_baby_survival",
            "care_kin",
            "care_other",
            "care_novel",
            "self_care",
        ):
            assert 0.0 <= float(row[key]) <= 1.0
        assert -1.0 <= float(row["recognition"]) <= 1.0
    assert rows[1]["care_kin"] != rows[2]["care_kin"]  # two different mothers, measured apart
    assert (out / "develop.png").stat().st_size > 10_000

    measured = []
    original = develop_module._measure
    monkeypatch.setattr(develop_module, "_measure", lambda *a: measured.append(1) or original(*a))
    saved = json.loads((out / "develop.json").read_text())
    del saved["rows"]["3"]  # as if killed before the last row was written
    (out / "develop.json").write_text(json.dumps(saved))
    assert main(["develop", str(run), "--out", str(out), *QUICK]) == 0
    assert len(measured) == 1  # only the missing row is measured again
    assert list(csv.DictReader((out / "develop.csv").open())) == rows


def test_develop_refuses_runs_without_snapshots_and_bad_settings(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "nursery", "--steps", "128", "--out", str(run), *TINY,
                 "--train-set", "snapshot_every=0"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["develop", str(run), *QUICK]) == 2
    assert "kept no snapshots" in capsys.readouterr().err
    assert main(["develop", str(tmp_path / "nothing"), *QUICK]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["develop", str(run), "--units", "0"]) == 2
    assert "units" in capsys.readouterr().err
