"""The maternal-model audit: its counterfactual table agrees with M on the real transitions, and the CLI
reports or refuses clearly."""

import json

import torch

from analysis.cli import main
from analysis.maternal_audit import action_preferences
from caring.maternal import MaternalModel, collect
from caring.tasks.nursery import NurseryTask
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import N_ACTIONS, NurseryCore
from worlds.nursery.scripted import SCRIPTED

TINY = ["--steps", "128", "--train-set", "worlds=8", "--train-set", "rollout=8", "--train-set", "hidden=16",
        "--train-set", "demo_episodes=4"]  # fmt: skip


def judgement(model: MaternalModel):
    return lambda obs, action, next_obs: torch.sigmoid(model(obs, action, next_obs))


def train(out, method: str) -> int:
    return main(["train", "nursery", "--method", method, "--out", str(out), *TINY])


def test_the_taken_action_column_is_m_on_the_real_transitions():
    """Stepping every counterfactual from the same state must not disturb the real episode: the reward
    the table gives each action where it was really taken equals M on the transitions actually made."""
    core = NurseryCore(NurseryConfig())
    torch.manual_seed(0)
    model = MaternalModel(core.obs_dim, N_ACTIONS)
    expert = SCRIPTED["expert"](core)
    task = NurseryTask()
    audit = action_preferences(task, core, judgement(model), expert, episodes=3, seed=5)
    real = collect(task, core, expert, 3, 5, 1.0)
    reward = torch.sigmoid(model(real.obs, real.action, real.next_obs))
    counts = torch.bincount(real.action, minlength=N_ACTIONS)
    assert audit["taken_count"] == counts.tolist() and audit["states"] == len(real)
    for a in range(N_ACTIONS):
        if counts[a]:
            assert abs(audit["reward_if"][a][a] - float(reward[real.action == a].mean().detach())) < 1e-5
    assert 0.0 <= audit["top_action_is_taken"] <= 1.0


def test_audit_cli_reports_a_run_and_refuses_runs_without_a_maternal_model(tmp_path, capsys):
    assert train(tmp_path / "rlmf", "rlmf") == 0
    capsys.readouterr()
    assert main(["audit", str(tmp_path / "rlmf"), "--episodes", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["audits"]) == {"expert", "random", str(tmp_path / "rlmf")}
    assert all(len(a["reward_if"]) == N_ACTIONS for a in report["audits"].values())
    assert train(tmp_path / "ppo", "ppo") == 0
    capsys.readouterr()
    for args, message in (
        ([str(tmp_path / "ppo")], "has no maternal model"),
        ([str(tmp_path / "nowhere")], "not a run directory"),
        ([str(tmp_path / "rlmf"), "--policy", "nobody"], "unknown policy 'nobody'"),
        ([str(tmp_path / "rlmf"), "--episodes", "0"], "--episodes must be at least 1"),
    ):
        assert main(["audit", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err


def test_lava_audit_groups_every_real_step_by_the_tile_it_entered():
    from caring.tasks import get_task
    from worlds.lava.config import LavaConfig
    from worlds.lava.core import LavaCore

    task, core = get_task("lava"), LavaCore(LavaConfig(split="test", quicksand=0.5))
    torch.manual_seed(0)
    model = MaternalModel(core.obs_dim, task.n_actions)
    shortcut = task.scripted["shortcut"](core)
    audit = action_preferences(task, core, judgement(model), shortcut, episodes=40, seed=1)
    groups = audit["reward_by_outcome"]
    assert sum(g["count"] for g in groups.values()) == audit["states"]  # the groups partition the steps
    assert groups["onto the goal"]["count"] == 40  # the shortcut walker always arrives
    assert groups["on lava"]["count"] > 0 and groups["into quicksand"]["count"] > 0
