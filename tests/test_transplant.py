"""`caring transplant`: a donor's care units added to a recipient's policy, exactly as described, with an
adapter that recovers what it should, end to end on tiny runs, and bad input in one line."""

import json

import pytest
import torch

from analysis.circuits import load_run
from analysis.cli import main
from analysis.transplant import TransplantedMother, fit_adapter
from caring.policies import TrainedMother

TINY = ["--steps", "256", "--train-set", "worlds=8", "--train-set", "rollout=8", "--train-set", "hidden=16",
        "--set", "max_cycles=80"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("transplant")
    donor, recipient = root / "donor", root / "recipient"
    assert main(["train", "nursery", "--method", "ppo", "--out", str(donor), *TINY]) == 0
    never_cared = ["--set", "baby_reward_weight=0", "--seed", "1"]
    assert main(["train", "nursery", "--method", "ppo", "--out", str(recipient), *TINY, *never_cared]) == 0
    return donor, recipient


def test_the_transplant_adds_the_donors_readout_of_its_units_to_her_logits(runs):
    _, core, donor = load_run(runs[0])
    _, _, recipient = load_run(runs[1])
    obs = core.reset(torch.arange(6))[1].reshape(12, -1)
    own = TrainedMother(recipient).logits(obs)
    assert torch.equal(TransplantedMother(recipient, donor, [1, 2], 0.0).logits(obs), own)
    with torch.no_grad():
        everything = TransplantedMother(recipient, donor, list(range(16)), 1.0).logits(obs)
        donor_logits = donor(obs)[0]
    assert torch.allclose(everything, own + donor_logits - donor.policy.bias, atol=1e-5)
    with torch.no_grad():
        two = TransplantedMother(recipient, donor, [3, 7], 2.0).logits(obs)
        expected = own + 2.0 * donor.trunk(obs)[:, [3, 7]] @ donor.policy.weight[:, [3, 7]].T
    assert torch.allclose(two, expected, atol=1e-5)


def test_an_adapter_from_a_mother_to_herself_recovers_her_units(runs):
    _, core, donor = load_run(runs[0])
    obs = core.reset(torch.arange(200))[1].reshape(400, -1)
    adapter, r2 = fit_adapter(donor, donor, [0, 5, 9], obs, ridge=1e-6)
    assert r2 > 0.999
    with torch.no_grad():
        assert torch.allclose(adapter(obs), donor.trunk(obs)[:, [0, 5, 9]], atol=1e-3)


@pytest.mark.parametrize("method", ["graft", "adapter"])
def test_transplant_cli_reports_before_after_and_a_random_control(runs, tmp_path, capsys, method):
    out = tmp_path / method
    argv = ["transplant", str(runs[0]), str(runs[1]), "--out", str(out), "--method", method, "--units", "4",
            "--quick", "--json"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "report.json").read_text())
    assert printed["baby_survival_after"] == report["after"]["baby_survival"] and len(report["units"]) == 4
    assert [row["coefficient"] for row in report["dose_response"]] == [0.0, 1.0]
    assert report["chosen_coefficient"] in (0.0, 1.0) and len(report["controls"]) == 1
    assert (report["adapter_heldout_r2"] is None) == (method == "graft")
    assert (out / "dose_response.png").stat().st_size > 0


def test_transplant_refuses_bad_input_in_one_line(runs, tmp_path, capsys):
    other = tmp_path / "other"
    assert (
        main(["train", "nursery", "--method", "ppo", "--out", str(other), *TINY, "--set", "n_hazards=2"]) == 0
    )
    for args, message in (
        ([str(runs[0]), str(other)], "another world"),
        ([str(runs[0]), str(runs[1]), "--units", "99"], "at most the donor's 16 units"),
        ([str(runs[0]), str(runs[1]), "--method", "surgery"], "method"),
        ([str(runs[0]), str(tmp_path / "nowhere")], "not a run directory"),
    ):
        capsys.readouterr()
        assert main(["transplant", *args, "--out", str(tmp_path / "o"), "--quick"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("caring: error:") and message in err and "\n" not in err, err
