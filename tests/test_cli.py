"""The user-facing commands: eval --json keys, render GIFs and frames, the main job, the benchmark."""

import argparse
import json

import numpy as np
import torch
from PIL import Image

import worlds
from analysis.cli import main
from caring.commands import DEMO_MOTHER, world_config
from caring.episodes import episode_keys
from worlds.nursery.core import NurseryCore

REQUIRED = {
    "policy",
    "episodes",
    "baby_survival_rate",
    "baby_lifetime_mean",
    "harm_events_per_episode",
    "mother_survival_rate",
}


def test_eval_json_has_the_promised_keys(capsys):
    assert main(["eval", "nursery", "--policy", "negligent", "--episodes", "4", "--seed", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result.keys() >= REQUIRED and result["policy"] == "negligent" and result["episodes"] == 4


def test_eval_is_deterministic_and_seed_dependent(capsys):
    runs = []
    for seed in (1, 1, 2):
        main(["eval", "nursery", "--policy", "expert", "--episodes", "6", "--seed", str(seed), "--json"])
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0] == runs[1]
    outcome = [{k: v for k, v in run.items() if k != "seed"} for run in runs]
    assert outcome[0] != outcome[2]


def test_render_writes_a_gif(tmp_path, capsys):
    out = tmp_path / "expert.gif"
    assert main(["render", "nursery", "--policy", "expert", "--out", str(out), "--steps", "12"]) == 0
    gif = Image.open(out)
    assert gif.n_frames == 13 and gif.size[0] == 12 * 36
    sparse = tmp_path / "sparse.gif"
    args = ["render", "nursery", "--policy", "expert", "--steps", "12", "--every", "5", "--out", str(sparse)]
    assert main(args) == 0
    assert Image.open(sparse).n_frames == 4  # states 0, 5, 10 and the last, 12
    gif.seek(12)
    last = np.asarray(gif.convert("RGB"))
    sparse_gif = Image.open(sparse)
    sparse_gif.seek(3)
    assert np.array_equal(np.asarray(sparse_gif.convert("RGB")), last)


def test_rgb_array_frames_show_the_world_change():
    env = worlds.make("nursery", render_mode="rgb_array", birth_step=1)
    env.reset(seed=4)
    first = env.render()
    for _ in range(3):
        env.step({a: 0 for a in env.agents})
    later = env.render()
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    assert not np.array_equal(first, later)  # babies were born and moved
    env.close()


def test_demo_trains_evaluates_and_writes_table_plots_and_gifs(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path), "--episodes", "4", "--set", "max_cycles=30", "--steps", "1"]
    assert main(args) == 0
    rows = json.loads((tmp_path / "scripted_mothers.json").read_text())
    assert [r["policy"] for r in rows][:3] == [DEMO_MOTHER, "expert", "expert-no-feed"]
    assert "| expert |" in (tmp_path / "scripted_mothers.md").read_text()
    assert Image.open(tmp_path / "nursery_expert.gif").n_frames == 31
    assert Image.open(tmp_path / "nursery_trained.gif").n_frames == 31
    run = tmp_path / "mother"
    assert {"maternal.safetensors", "mother.safetensors", "learning_curves.png"} <= {
        p.name for p in run.iterdir()
    }
    train = json.loads((run / "config.json").read_text())["train"]
    assert (train["method"], train["beta_schedule"], train["mat_learned_weight"]) == ("rlmf", "adaptive", 0.1)
    # run again with other settings: refused, and the trained mother is left as she was
    weights = (run / "mother.safetensors").read_bytes()
    assert main([*args[:-1], "2"]) == 2
    err = capsys.readouterr().err
    assert "holds a run with other settings" in err and err.count("\n") == 1
    assert (run / "mother.safetensors").read_bytes() == weights


def test_demo_without_training_evaluates_the_scripted_mothers_only(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path), "--episodes", "4", "--set", "max_cycles=30", "--steps", "0"]
    assert main(args) == 0
    rows = json.loads((tmp_path / "scripted_mothers.json").read_text())
    assert rows[0]["policy"] == "expert" and not (tmp_path / "mother").exists()


def test_bench_json_schema(capsys):
    assert (
        main(
            [
                "bench",
                "--world",
                "nursery",
                "--json",
                "--batches",
                "1",
                "8",
                "--repeats",
                "1",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["world"] == "nursery" and report["state_bytes_per_world"] > 0
    modes = [(r["mode"], r["batch"]) for r in report["results"]]
    assert modes == [("pettingzoo", 1), ("batched", 1), ("batched", 8), ("vector", 2), ("vector", 8)]
    assert all(r["agent_steps_per_s"] > 0 for r in report["results"])


def test_params_lists_every_parameter(capsys):
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert "curiosity" in out and "births_per_life" in out


def test_bench_train_reports_the_time_split(capsys):
    small = ["--train-set", "worlds=128", "--train-set", "demo_episodes=16"]  # the split, not the speed
    assert main(["bench", "--train", "--repeats", "1", "--json", "--device", "cpu", *small]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert [r["method"] for r in rows] == ["ppo", "rlmf"]
    for r in rows:
        assert r["agent_steps_per_s"] > 0 and r["env_s"] > 0 and r["inference_s"] > 0 and r["update_s"] > 0
    assert rows[0]["stream_s"] < rows[1]["stream_s"]  # RLMF consults M every step, PPO's stream pays nothing


def test_the_lava_world_through_every_command(tmp_path, capsys):
    assert main(["params", "lava"]) == 0
    assert "quicksand_delay" in capsys.readouterr().out
    for policy, lava in (("expert", 0.0), ("shortcut", 1.0)):
        assert (
            main(["eval", "lava", "--policy", policy, "--episodes", "20", "--set", "split=test", "--json"])
            == 0
        )
        result = json.loads(capsys.readouterr().out)
        assert result["success_rate"] == 1.0 and result["lava_episode_rate"] == lava
    gif = tmp_path / "walker.gif"
    assert main(["render", "lava", "--policy", "shortcut", "--out", str(gif), "--set", "quicksand=1"]) == 0
    assert 6 < Image.open(gif).n_frames <= 41  # stops once the walker reaches the goal
    run = tmp_path / "run"
    tiny = [
        "--steps",
        "512",
        "--train-set",
        "worlds=16",
        "--train-set",
        "rollout=16",
        "--train-set",
        "hidden=16",
    ]
    assert main(["train", "lava", "--method", "ppo", "--out", str(run), *tiny]) == 0
    assert "trained 2 updates" in capsys.readouterr().out
    assert (
        main(["eval", "lava", "--policy", str(run), "--episodes", "8", "--set", "split=test", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["episodes"] == 8
    assert main(["eval", "nursery", "--policy", str(run), "--episodes", "2"]) == 2
    assert "trained on the lava world, not nursery" in capsys.readouterr().err
    assert (
        main(["bench", "--world", "lava", "--batches", "8", "--repeats", "1", "--json", "--device", "cpu"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["world"] == "lava"


def test_a_preset_names_a_whole_world_under_what_is_set_explicitly(tmp_path, capsys):
    def world(**given):
        return world_config(
            argparse.Namespace(**({"world": "nursery", "preset": None, "config": None, "set": []} | given))
        )

    def evaluate(*extra):
        main(["eval", "nursery", "--policy", "expert", "--episodes", "4", "--seed", "5", "--json", *extra])
        return json.loads(capsys.readouterr().out)

    # `hungry`: mothers start with energy 15, so one who never eats starves at step 15, before the birth
    hungry = world(preset="hungry")
    assert (hungry.preset, hungry.energy_start) == ("hungry", 15) and world(set=["preset=hungry"]) == hungry
    core = NurseryCore(hungry)
    state, _ = core.reset(episode_keys(0, 2, "cpu"))
    for _ in range(15):
        state, _ = core.step(state, torch.zeros(2, core.A, dtype=torch.long))  # everybody stays
    assert not state.mother_alive.any()
    assert evaluate("--preset", "hungry") != evaluate()
    assert evaluate("--preset", "hungry", "--set", "energy_start=40") == evaluate("--set", "preset=default")
    # a trained mother's own world is the base: the preset changes it (and is recorded), --set wins
    run = tmp_path / "run"
    settings = ["--train-set", "steps=64", "--train-set", "worlds=4", "--train-set", "rollout=8"]
    assert (
        main(["train", "nursery", "--method", "ppo", "--out", str(run), "--set", "max_cycles=20", *settings])
        == 0
    )
    capsys.readouterr()
    theirs = world(policy=str(run), preset="hungry", set=["energy_start=12"])
    assert (theirs.preset, theirs.energy_start, theirs.max_cycles) == ("hungry", 12, 20)
    assert main(["params"]) == 0
    assert "hungry: energy_start=15" in capsys.readouterr().out
