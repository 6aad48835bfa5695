"""`caring compare`: CKA, aligned probe directions and unit matching measure what they say on constructed
cases, and the command runs end to end on tiny mothers, a mother against herself being the same drive."""

import json

import pytest
import torch

from analysis.cli import main
from analysis.universality import aligned_cosines, linear_cka, match_units, procrustes

TINY = ["--steps", "256", "--train-set", "worlds=8", "--train-set", "rollout=8", "--train-set", "hidden=16",
        "--set", "max_cycles=80", "--method", "ppo"]  # fmt: skip


def rotation(p: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(
        torch.randn(p, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    return q


def test_cka_ignores_rotation_and_scale_and_sees_unrelated_activations():
    x = torch.randn(500, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert linear_cka(x, 3.0 * x @ rotation(12, 1) + 5.0) == pytest.approx(1.0, abs=1e-9)
    unrelated = torch.randn(500, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert linear_cka(x, unrelated) < 0.1


def test_procrustes_finds_the_rotation_and_aligned_probe_directions_agree():
    a = torch.randn(400, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    q = rotation(8, 4)
    b = a @ q  # the same representation, rotated
    assert torch.allclose(procrustes(b, a), q.T, atol=1e-8)
    facts = {"f": a @ torch.arange(8, dtype=torch.float64), "g": a[:, 0] - a[:, 5]}
    assert all(c == pytest.approx(1.0, abs=1e-6) for c in aligned_cosines(a, b, facts, ridge=1e-8).values())
    noise = torch.randn(400, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert abs(aligned_cosines(a, noise, facts, ridge=1e-8)["g"]) < 0.5


def test_units_are_matched_to_their_permuted_copies_and_dead_units_to_nothing():
    a = torch.randn(300, 6, generator=torch.Generator().manual_seed(6))
    a[:, 4] = 0.0  # a unit that never fires
    perm = torch.tensor([2, 0, 5, 1, 4, 3])
    pairs = dict(match_units(a, a[:, perm]))
    assert pairs == {int(perm[j]): j for j in range(6) if int(perm[j]) != 4}


def test_compare_cli_reports_every_pair_and_a_mother_is_her_own_drive(tmp_path, capsys):
    runs = []
    for seed in (1, 2):
        runs.append(tmp_path / f"seed{seed}")
        assert main(["train", "nursery", "--out", str(runs[-1]), "--seed", str(seed), *TINY]) == 0
    out = tmp_path / "compare"
    assert main(["compare", str(runs[0]), str(runs[1]), str(runs[0]), "--out", str(out), "--quick"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert [p["runs"] for p in report["pairs"]] == [[0, 1], [0, 2], [1, 2]]
    same = report["pairs"][1]  # the first mother against herself
    assert same["cka"] == pytest.approx(1.0, abs=1e-6)
    assert all(c == pytest.approx(1.0, abs=1e-3) for c in same["probe_cosine"].values())
    assert same["matched_care_drop_correlation"] == pytest.approx(1.0, abs=1e-6) or same["matched_units"] < 2
    assert 0.0 <= report["pairs"][0]["cka"] <= 1.0 and (out / "cka.png").stat().st_size > 0
    assert "Is it the same drive?" in capsys.readouterr().out

    other = tmp_path / "other"
    assert main(["train", "nursery", "--out", str(other), *TINY, "--set", "n_hazards=2"]) == 0
    for args, message in (
        ([str(runs[0])], "at least two runs"),
        ([str(runs[0]), str(other)], "another world"),
    ):
        assert main(["compare", *args, "--out", str(tmp_path / "o"), "--quick"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("caring: error:") and message in err and "\n" not in err, err
