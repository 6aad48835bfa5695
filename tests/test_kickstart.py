"""Kickstarting (`--method kickstart`): PPO taught by a scripted mother whose weight falls to 0."""

import csv

from analysis.cli import main

TINY = ["--train-set", "worlds=8", "--train-set", "rollout=8", "--train-set", "hidden=16",
        "--train-set", "checkpoint_every=2"]  # fmt: skip
PER_UPDATE = 8 * 2 * 8  # worlds x mothers x rollout


def train(out, updates, *extra, method="kickstart"):
    args = ["train", "nursery", "--method", method, "--steps", str(updates * PER_UPDATE), "--seed", "5",
            "--out", str(out), *TINY, *extra]  # fmt: skip
    return main(args)


def rows(run):
    return list(csv.DictReader((run / "metrics.csv").open()))


def test_the_teachers_weight_falls_linearly_to_zero_and_then_nobody_is_asked(tmp_path):
    assert train(tmp_path / "run", 6, "--train-set", f"teacher_steps={4 * PER_UPDATE}") == 0
    found = rows(tmp_path / "run")
    assert [float(r["teacher_weight"]) for r in found] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert all(0 <= float(r["teacher_agreement"]) <= 1 for r in found[:4])
    assert [r["teacher_agreement"] for r in found[4:]] == ["", ""]  # weaned: no labels, no loss


def test_with_no_teacher_weight_she_is_ppo_bit_for_bit(tmp_path):
    assert train(tmp_path / "ppo", 3, method="ppo") == 0
    assert train(tmp_path / "kick", 3, "--train-set", "teacher_coef=0") == 0
    ppo, kick = rows(tmp_path / "ppo"), rows(tmp_path / "kick")
    for a, b in zip(ppo, kick, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: b[k] for k in a if k != "seconds"}
    assert (tmp_path / "ppo" / "mother.safetensors").read_bytes() == (
        tmp_path / "kick" / "mother.safetensors"
    ).read_bytes()


def test_a_strong_teacher_makes_her_agree_with_it(tmp_path):
    """Weighted 5 (no entropy bonus), the teacher makes her pick its action far more often than the same
    run with the teacher weighted 1e-4, whose labels are logged but hardly pull."""
    same = ["--train-set", "ent_coef=0", "--train-set", "lr=0.003", "--train-set", "teacher_steps=10000000"]
    agreement = {}
    for coef in ("5", "0.0001"):
        assert train(tmp_path / coef, 15, *same, "--train-set", f"teacher_coef={coef}") == 0
        agreement[coef] = [float(r["teacher_agreement"]) for r in rows(tmp_path / coef)]
    taught, control = sum(agreement["5"][-5:]) / 5, sum(agreement["0.0001"][-5:]) / 5
    assert taught > control + 0.2, (taught, control)


def test_a_resumed_kickstart_run_is_the_same_as_one_that_never_stopped(tmp_path):
    teach = ["--train-set", f"teacher_steps={3 * PER_UPDATE}"]
    assert train(tmp_path / "whole", 4, *teach) == 0
    assert train(tmp_path / "split", 2, *teach) == 0
    args = ["train", "nursery", "--out", str(tmp_path / "split"), "--resume", "--steps", str(4 * PER_UPDATE)]
    assert main(args) == 0
    whole, split = rows(tmp_path / "whole"), rows(tmp_path / "split")
    drop = {"seconds", "agent_steps_per_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in whole] == [
        {k: v for k, v in r.items() if k not in drop} for r in split
    ]


def test_an_unknown_teacher_is_one_clear_line(tmp_path, capsys):
    assert train(tmp_path / "run", 1, "--train-set", "teacher=nobody") == 2
    err = capsys.readouterr().err
    assert "teacher='nobody' is not a scripted mother of the nursery world" in err and "expert-senses" in err
    assert len(err.strip().splitlines()) == 1


def test_the_teacher_follows_a_curriculum_into_a_world_of_another_size(tmp_path):
    """A warm-up without orphans (two baby slots), then the selective world (four): the teacher plans
    in whichever world she is in."""
    warmup = ["--preset", "selective", "--train-set", "warmup_world=orphans=0", "--train-set",
              f"warmup_steps={2 * PER_UPDATE}", "--train-set", f"teacher_steps={8 * PER_UPDATE}"]  # fmt: skip
    assert train(tmp_path / "run", 4, *warmup) == 0
    found = rows(tmp_path / "run")
    assert len(found) == 4 and all(0 <= float(r["teacher_agreement"]) <= 1 for r in found)
