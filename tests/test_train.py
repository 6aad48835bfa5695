"""The trainer's machinery on tiny runs: determinism, exact resume, run directories, bad input."""

import csv
import dataclasses
import json
import shutil

import pytest
import torch

from analysis.cli import main
from caring.files import run_lock
from caring.runs import snapshots, weaning_mother
from caring.train import Trainer
from worlds.config import build_config
from worlds.nursery.config import NurseryConfig

TINY = ["--train-set", "worlds=8", "--train-set", "rollout=8", "--train-set", "hidden=16",
        "--train-set", "checkpoint_every=2", "--train-set", "demo_episodes=4"]  # fmt: skip
PER_UPDATE = 8 * 2 * 8  # worlds x mothers x rollout


def train(out, method="ppo", updates=4, *extra):
    args = ["train", "nursery", "--method", method, "--steps", str(updates * PER_UPDATE), "--seed", "3",
            "--out", str(out), *TINY, *extra]  # fmt: skip
    return main(args)


@pytest.mark.parametrize("method", ["ppo", "rlmf", "ppo-lagrangian", "kindness"])
def test_same_seed_same_metrics(tmp_path, method, capsys):
    assert train(tmp_path / "a", method) == 0 and train(tmp_path / "b", method) == 0
    a, b = (tmp_path / "a" / "metrics.csv").read_text(), (tmp_path / "b" / "metrics.csv").read_text()
    assert a == b and len(a.splitlines()) == 5  # header + 4 updates
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert {
        "config.json",
        "metrics.csv",
        "speed.csv",
        "mother.safetensors",
        "checkpoint.safetensors",
        "learning_curves.png",
        "beta_harm.png",
    } <= files
    if method == "rlmf":
        report = json.loads((tmp_path / "a" / "maternal.json").read_text())
        assert report["heldout_balanced_accuracy"] > 0.5 and "maternal.safetensors" in files


def test_an_interrupted_run_resumes_to_the_same_end(tmp_path, capsys):
    assert train(tmp_path / "whole", "rlmf", 4) == 0
    assert train(tmp_path / "cut", "rlmf", 2) == 0  # stops after 2 updates (a checkpoint)
    assert (
        main(["train", "nursery", "--out", str(tmp_path / "cut"), "--resume", "--steps", str(4 * PER_UPDATE)])
        == 0
    )
    for name in ("metrics.csv", "mother.safetensors"):  # byte for byte, line endings included
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_snapshots_keep_the_mother_along_the_way_and_survive_a_resume(tmp_path, capsys):
    from safetensors.torch import load_file

    from caring.runs import snapshots

    every = ["--train-set", "snapshot_every=1"]
    assert train(tmp_path / "whole", "ppo", 4, *every) == 0
    assert train(tmp_path / "cut", "ppo", 3, *every) == 0
    (tmp_path / "cut" / "snapshots" / "notes.txt").write_text("not a snapshot")  # a user's file: left out
    resume = ["train", "nursery", "--out", str(tmp_path / "cut"), "--resume", "--steps", str(4 * PER_UPDATE)]
    assert main(resume) == 0
    kept = snapshots(tmp_path / "whole")
    assert [update for update, _ in kept] == [0, 1, 2, 3, 4]
    assert [(u, p.read_bytes()) for u, p in snapshots(tmp_path / "cut")] == [
        (u, p.read_bytes()) for u, p in kept
    ]
    first, last = load_file(kept[0][1]), load_file(kept[-1][1])  # untrained, trained
    assert any(not (first[k] == last[k]).all() for k in first)  # she changed along the way
    mother = load_file(tmp_path / "whole" / "mother.safetensors")
    assert all((mother[k] == last[k]).all() for k in mother)  # the last snapshot is the trained mother


def test_an_interrupted_lagrangian_run_resumes_with_its_multiplier(tmp_path, capsys):
    limit = ["--train-set", "cost_limit=0.001", "--train-set", "lagrange_lr=1"]  # λ moves every update
    assert train(tmp_path / "whole", "ppo-lagrangian", 4, *limit) == 0
    assert train(tmp_path / "cut", "ppo-lagrangian", 2, *limit) == 0
    resume = ["train", "nursery", "--out", str(tmp_path / "cut"), "--resume", "--steps", str(4 * PER_UPDATE)]
    assert main(resume) == 0
    whole = (tmp_path / "whole" / "metrics.csv").read_text()
    assert (tmp_path / "cut" / "metrics.csv").read_text() == whole
    multipliers = [float(r["lagrange_multiplier"]) for r in csv.DictReader(whole.splitlines())]
    assert multipliers[:2] == [0.0, 0.0] and 0 < multipliers[2] < multipliers[3]  # no babies, no cost yet


def test_an_interrupted_rlhf_run_resumes_with_its_labels_and_reward_models(tmp_path, monkeypatch, capsys):
    """Killed right after its checkpoint at update 2 of 4 (same --steps, so the same label plan; babies
    from the first step, so labels are bought before the kill), the run resumes to the same bytes: the
    labels, the reward ensemble, its optimiser and its sampler all come back."""
    prefs = ["--train-set", "segment_length=4", "--train-set", "labels=30", "--set", "birth_step=0"]
    assert train(tmp_path / "whole", "rlhf", 4, *prefs) == 0

    class Killed(Exception):
        pass

    save = Trainer.save_checkpoint

    def save_then_die(self):
        save(self)
        if self.update == 2:
            raise Killed

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(tmp_path / "cut", "rlhf", 4, *prefs)
    monkeypatch.setattr(Trainer, "save_checkpoint", save)
    resume = ["train", "nursery", "--out", str(tmp_path / "cut"), "--resume", "--steps", str(4 * PER_UPDATE)]
    assert main(resume) == 0
    for name in ("metrics.csv", "mother.safetensors"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    rows = list(csv.DictReader((tmp_path / "whole" / "metrics.csv").open()))
    labels = [int(r["labels"]) for r in rows]
    assert 0 < labels[1] < labels[2] < labels[3] == 30  # labels bought before the kill and after
    assert all(r["reward_model_loss"] != "nan" for r in rows[1:])


def test_resume_after_rows_past_the_checkpoint_drops_them(tmp_path, capsys):
    assert train(tmp_path / "whole", "ppo", 4) == 0
    assert train(tmp_path / "cut", "ppo", 3) == 0  # checkpoint at 2, a 3rd row written, then "killed"
    assert (
        main(["train", "nursery", "--out", str(tmp_path / "cut"), "--resume", "--steps", str(4 * PER_UPDATE)])
        == 0
    )
    assert (tmp_path / "cut" / "metrics.csv").read_text() == (tmp_path / "whole" / "metrics.csv").read_text()


def test_trained_mothers_evaluate_like_scripted_ones(tmp_path, capsys):
    assert train(tmp_path / "run", "ppo", 2) == 0
    capsys.readouterr()
    assert main(["eval", "nursery", "--policy", str(tmp_path / "run"), "--episodes", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"baby_survival_rate", "harm_events_per_episode", "mother_survival_rate"} <= result.keys()
    gif = tmp_path / "m.gif"
    assert (
        main(["render", "nursery", "--policy", str(tmp_path / "run"), "--out", str(gif), "--steps", "5"]) == 0
    )
    assert gif.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "sarsa"], "method: 'sarsa' is not one of ppo, rlmf"),
        (["--beta-schedule", "sudden"], "beta_schedule: 'sudden' is not one of constant"),
        (["--steps", "-5"], "steps=-5 is out of range"),
        (["--train-set", "beta0=1.5"], "beta0=1.5 is out of range"),
        (["--train-set", "wings=2"], "unknown TrainConfig key 'wings'"),
    ],
)
def test_train_rejects_bad_settings(tmp_path, args, message, capsys):
    assert main(["train", "nursery", "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not (tmp_path / "r").exists()


def test_bad_run_directories_and_checkpoints(tmp_path, capsys):
    assert main(["train", "nursery", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "missing file" in capsys.readouterr().err
    assert train(tmp_path / "run", "ppo", 2) == 0
    before = (tmp_path / "run" / "metrics.csv").read_text()
    assert train(tmp_path / "run", "ppo", 2) == 2  # no silent overwrite of an existing run
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.csv").read_text() == before
    ckpt = tmp_path / "run" / "checkpoint.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated
    assert main(["train", "nursery", "--out", str(tmp_path / "run"), "--resume", "--steps", "999999"]) == 2
    assert "corrupt checkpoint" in capsys.readouterr().err
    assert main(["eval", "nursery", "--policy", str(tmp_path / "nowhere/run")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    # a mother trained on 7x7 views cannot drive a world that shows 5x5 views
    assert main(["eval", "nursery", "--policy", str(tmp_path / "run"), "--set", "view_radius=2"]) == 2
    assert "first layer reads 500 inputs" in capsys.readouterr().err


def test_resume_refuses_a_checkpoint_from_a_world_with_another_observation_shape(tmp_path, capsys):
    assert train(tmp_path / "small", "ppo", 2, "--set", "view_radius=2") == 0
    assert train(tmp_path / "run", "ppo", 2) == 0
    for name in ("checkpoint.safetensors", "checkpoint.json"):  # someone copies the wrong checkpoint in
        (tmp_path / "run" / name).write_bytes((tmp_path / "small" / name).read_bytes())
    metrics = (tmp_path / "run" / "metrics.csv").read_text()
    assert main(["train", "nursery", "--out", str(tmp_path / "run"), "--resume", "--steps", "999999"]) == 2
    err = capsys.readouterr().err
    assert "does not fit this run's world: obs has shape" in err and err.count("\n") == 1
    assert (tmp_path / "run" / "metrics.csv").read_text() == metrics  # nothing overwritten


def test_ppo_solves_a_tiny_task(tmp_path):
    """A mother alone on a small open map starts with 6 energy and dies unless she finds food and eats
    within about 6 steps (no baby, no hazards, no predator). Untrained she survives a few percent of
    episodes; PPO must teach her to walk to food and EAT."""
    from caring.config import TrainConfig
    from caring.evaluate import evaluate
    from caring.policies import TrainedMother
    from caring.train import start_run
    from worlds.config import build_config
    from worlds.nursery.config import NurseryConfig

    world = build_config(NurseryConfig, dict(height=7, width=7, n_walls=0, n_hazards=0, n_food=3,
                         n_predators=0, births_per_life=0, max_cycles=30, energy_start=6, n_mothers=1,
                         view_radius=2))  # fmt: skip
    config = build_config(TrainConfig, dict(method="ppo", steps=60_000, worlds=64, rollout=16, hidden=32,
                          lr=1e-3, checkpoint_every=1000))  # fmt: skip
    trainer = start_run(tmp_path / "tiny", world, config, "cpu", resume=False)

    def survival() -> float:
        return evaluate(trainer.core, TrainedMother(trainer.net), 256, seed=5)["mother_survival_rate"]

    before = survival()
    trainer.run()
    after = survival()
    assert before < 0.15 and after > 0.7, (before, after)


LAVA_TINY = ["--train-set", "worlds=16", "--train-set", "rollout=16", "--train-set", "hidden=16",
             "--train-set", "demo_episodes=6", "--train-set", "checkpoint_every=2"]  # fmt: skip


def test_weaning_sets_beta1_to_zero_after_the_schedule_and_resumes_exactly(tmp_path, capsys):
    from caring.config import TrainConfig
    from caring.train import start_run
    from worlds.config import build_config
    from worlds.lava.config import LavaConfig

    per_update = 16 * 16
    args = ["train", "lava", "--method", "rlmf", "--beta-schedule", "constant", *LAVA_TINY,
            "--steps", str(3 * per_update), "--train-set", f"wean_steps={2 * per_update}"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    rows = list(csv.DictReader((tmp_path / "whole" / "metrics.csv").open()))
    assert [float(r["beta1"]) for r in rows] == [0.5, 0.5, 0.5, 0.0, 0.0]
    assert {"success", "lava_episode_rate", "lava_per_episode", "steps_to_goal"} <= rows[0].keys()
    report = json.loads((tmp_path / "whole" / "maternal_action.json").read_text())  # lava's recipe's judge
    assert "heldout_top_action_is_experts" in report
    # the mother as she was when beta1 went to 0 is kept (beside the untrained one; every 25th is not due)
    assert [update for update, _ in snapshots(tmp_path / "whole")] == [0, 3]
    assert weaning_mother(tmp_path / "whole", agents=1) == snapshots(tmp_path / "whole")[1][1]

    # killed inside the weaning phase (after the checkpoint of update 4), then resumed: the same run
    saved = json.loads((tmp_path / "whole" / "config.json").read_text())["train"]
    config = build_config(TrainConfig, saved)

    def killed_after_update_4(update, total, row, speed):
        if update == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        start_run(tmp_path / "cut", LavaConfig(), config, "cpu", resume=False).run(killed_after_update_4)
    start_run(tmp_path / "cut", LavaConfig(), config, "cpu", resume=True).run()
    assert (tmp_path / "cut" / "metrics.csv").read_text() == (tmp_path / "whole" / "metrics.csv").read_text()


def test_lava_training_never_sees_quicksand_or_held_out_layouts(tmp_path, capsys):
    from caring.config import TrainConfig
    from caring.train import start_run
    from worlds.config import build_config
    from worlds.lava.config import LavaConfig
    from worlds.lava.core import CHANNELS, TEST_EVERY, layout_hash

    for bad in ("quicksand=0.2", "split=test"):
        assert main(["train", "lava", "--out", str(tmp_path / bad), "--set", bad, *LAVA_TINY]) == 2
        assert "for evaluation only" in capsys.readouterr().err and not (tmp_path / bad).exists()
    config = build_config(TrainConfig, {"method": "ppo", "worlds": 32, "rollout": 64, "hidden": 16})
    trainer = start_run(tmp_path / "ok", LavaConfig(), config, "cpu", resume=False)
    assert (layout_hash(*trainer.core.bank) % TEST_EVERY != 0).all()  # the layouts it draws from
    episodes = 0.0
    for _ in range(3):
        buf, stats, _ = trainer.collect_rollout()
        view = buf["obs"].view(-1, trainer.core.V * trainer.core.V + 1, len(CHANNELS))[:, :-1]
        assert not view[..., CHANNELS.index("soft")].any()  # no quicksand was ever in sight
        episodes += stats["episodes"]
    assert episodes > 32  # worlds were reset onto new layouts along the way


def test_lava_learned_judgement_never_pays_for_delaying_the_goal():
    import torch

    from caring.maternal import MaternalModel, maternal_reward
    from caring.tasks import get_task
    from worlds.lava.core import LavaCore

    task, core = get_task("lava"), LavaCore()
    model = MaternalModel(core.obs_dim, task.n_actions)
    state, obs = core.reset(torch.arange(64))
    action = torch.randint(0, 4, (64, 1))
    _, out = core.step(state, action)
    rules = task.rules(core, state, out, 5.0)
    reward = maternal_reward(model, obs, action, out.obs, task.judged(state), rules, 1.0, task.learned_offset)
    assert (reward <= 0).all() and (reward[out.events["lava"] > 0] <= -5).all()


@pytest.mark.parametrize("world", ["nursery", "lava"])
def test_the_rollout_resets_worlds_exactly_as_the_core_does(tmp_path, world):
    """The rollout steps finished worlds into episodes made ready before it began (a select, no host
    sync), and resets a world that finishes twice within one rollout on the spot. Replaying its actions
    on the core with plain `reset_done` after every step must give the same observations, episode by
    episode: short episodes (3 steps) over a 16-step rollout end several times per world."""
    import torch

    from caring.config import TrainConfig
    from caring.tasks import get_task
    from caring.train import Trainer
    from worlds.config import build_config

    task = get_task(world)
    config = build_config(TrainConfig, {"method": "ppo", "worlds": 8, "rollout": 16, "hidden": 16})
    trainer = Trainer(tmp_path, build_config(task.config_class, {"max_cycles": 3}), config)
    core = trainer.core
    state, obs = trainer.state, trainer.obs
    buf, stats, _ = trainer.collect_rollout()
    assert stats["episodes"] >= 8 * (16 // 3)  # every world ended five times at least
    for t in range(16):
        assert torch.equal(buf["obs"][t], obs.reshape(8 * core.A, -1))
        state, out = core.step(state, buf["action"][t].view(8, core.A))
        ended, obs = task.ended(state, out), out.obs
        if ended.any():
            state, obs = core.reset_done(state, obs, ended)
    assert torch.equal(trainer.obs, obs) and all(
        torch.equal(a, b) for a, b in zip(trainer.state.tensors(), state.tensors(), strict=True)
    )


def test_a_resume_refuses_flags_that_would_change_the_run(tmp_path, capsys):
    assert train(tmp_path / "run", "ppo", 2) == 0
    for extra in (["--method", "rlmf"], ["--seed", "0"], ["--set", "curiosity=0"], ["--train-set", "lr=0.1"]):
        assert main(["train", "nursery", "--out", str(tmp_path / "run"), "--resume", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{extra[0]} cannot change a resumed run" in err


def test_an_annealed_learning_rate_falls_to_its_last_step_and_resumes_exactly(tmp_path, capsys):
    """lr_anneal: update u (0-based) of U steps with lr * (1 - u / U); a run killed after a checkpoint
    and resumed anneals exactly as the whole run did."""
    from caring.runs import run_training, run_world
    from caring.train import start_run

    anneal = ["--train-set", "lr_anneal=true", "--train-set", "lr=0.001"]
    assert train(tmp_path / "whole", "ppo", 4, *anneal) == 0
    saved = json.loads((tmp_path / "whole" / "checkpoint.json").read_text())
    assert saved["opt_param_groups"][0]["lr"] == pytest.approx(0.001 * (1 - 3 / 4))
    assert train(tmp_path / "flat", "ppo", 4, "--train-set", "lr=0.001") == 0
    assert (tmp_path / "flat" / "metrics.csv").read_text() != (tmp_path / "whole" / "metrics.csv").read_text()

    class Killed(Exception):
        pass

    def killed_after_second_update(update, total, row, speed):
        if update == 2:  # its checkpoint is written (checkpoint_every=2)
            raise Killed

    world, config = run_world(tmp_path / "whole")[1], run_training(tmp_path / "whole")
    trainer = start_run(tmp_path / "cut", world, config, "cpu", resume=False)
    with pytest.raises(Killed):
        trainer.run(killed_after_second_update)
    assert main(["train", "nursery", "--out", str(tmp_path / "cut"), "--resume"]) == 0
    for name in ("metrics.csv", "mother.safetensors"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_a_setting_added_since_a_run_was_saved_takes_its_default_not_its_presets(tmp_path):
    """A run saved before `newborn_cry` existed, in the selective world as it was then: loading it gives
    that world (no newborn cries), not the preset's later value, and `started_with` still matches it."""
    from caring.config import TrainConfig
    from caring.runs import run_world, started_with

    world = build_config(NurseryConfig, {"preset": "selective", "hearing": "marked", "newborn_cry": 0})
    saved = dataclasses.asdict(world)
    del saved["newborn_cry"]
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps({"world_name": "nursery", "world": saved, "train": dataclasses.asdict(TrainConfig())})
    )
    assert build_config(NurseryConfig, {"preset": "selective"}).newborn_cry > 0
    assert run_world(run)[1] == world and run_world(run)[1].newborn_cry == 0
    assert started_with(run, world, TrainConfig())


def test_a_run_can_start_from_another_runs_mother_and_refuses_one_that_does_not_fit(tmp_path, capsys):
    from safetensors.torch import load_file

    from caring.config import train_config
    from caring.tasks import get_task
    from caring.train import start_run

    assert train(tmp_path / "first", "ppo", 2) == 0
    world, task = build_config(NurseryConfig, {}), get_task("nursery")
    settings = {"worlds": 8, "rollout": 8, "hidden": 16, "method": "ppo", "seed": 9, "steps": 2 * PER_UPDATE}
    donor = load_file(tmp_path / "first" / "mother.safetensors")
    second = start_run(
        tmp_path / "second",
        world,
        train_config(task, settings | {"init_from": str(tmp_path / "first")}),
        "cpu",
        False,
    )
    assert all(torch.equal(second.net.state_dict()[name], tensor) for name, tensor in donor.items())
    fresh = start_run(tmp_path / "fresh", world, train_config(task, settings), "cpu", False)
    assert not torch.equal(fresh.net.trunk_1.weight, second.net.trunk_1.weight)  # not the seed's own start
    # the second phase trains on from her, with its own settings
    args = ["train", "nursery", "--method", "ppo", "--steps", str(2 * PER_UPDATE), "--seed", "9",
            "--out", str(tmp_path / "phase2"), *TINY, "--train-set", f"init_from={tmp_path / 'first'}",
            "--train-set", "ent_coef=0"]  # fmt: skip
    assert main(args) == 0
    assert json.loads((tmp_path / "phase2" / "config.json").read_text())["train"]["init_from"] == str(
        tmp_path / "first"
    )
    capsys.readouterr()
    unfinished = tmp_path / "unfinished"  # the first run, its budget since doubled: half trained
    shutil.copytree(tmp_path / "first", unfinished)
    saved = json.loads((unfinished / "config.json").read_text())
    saved["train"]["steps"] *= 2
    (unfinished / "config.json").write_text(json.dumps(saved))
    for bad, message in (
        ([*TINY, "--train-set", "hidden=32"], "does not fit this run's network"),  # another network
        ([*TINY, "--train-set", f"init_from={tmp_path / 'none'}"], "none"),  # no run there
        ([*TINY, "--train-set", f"init_from={unfinished}"], "has trained 2 of its 4 updates"),
    ):
        args = ["train", "nursery", "--method", "ppo", "--steps", str(PER_UPDATE), "--out",
                str(tmp_path / "bad"), "--train-set", f"init_from={tmp_path / 'first'}", *bad]  # fmt: skip
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "bad").exists()  # nothing written
    with run_lock(tmp_path / "first"):  # her trainer still holds the run: her weights are not final
        args = ["train", "nursery", "--method", "ppo", "--steps", str(PER_UPDATE), "--out",
                str(tmp_path / "bad"), *TINY, "--train-set", f"init_from={tmp_path / 'first'}"]  # fmt: skip
        assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "is still training" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()
