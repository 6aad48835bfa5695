"""Training methods as stream objects: a new method is its own file plus one registry line (the README's
example, added here exactly as written there), and every registered method trains through the same
trainer, with the columns and schedule it declares."""

import csv
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from caring.config import TrainConfig, train_config
from caring.streams import STREAMS, get_stream
from caring.tasks import get_task
from worlds.config import ConfigError, build_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps", "512", "--train-set", "worlds=8", "--train-set", "rollout=16", "--train-set", "hidden=16",
        "--train-set", "demo_episodes=2"]  # fmt: skip


def readme_stream() -> str:
    """The example stream of the README's "Extending" section, as a module's source."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("- **A training method**") :]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return textwrap.dedent(block)


def test_a_new_method_is_its_own_file_and_one_registry_line(tmp_path):
    (tmp_path / "steady.py").write_text(readme_stream())
    experiment = tmp_path / "steady.toml"
    experiment.write_text('seeds = [0]\n[methods.steady]\nmethod = "steady"\nsteady_pay = 0.5\n')
    out = tmp_path / "run"
    script = f"""
import json, sys
import caring.streams
from steady import Steady
caring.streams.STREAMS[Steady.name] = Steady  # the registry line
from analysis.cli import main
from analysis.sweep import load_experiment
assert main(["train", "nursery", "--method", "steady", "--train-set", "steady_pay=0.5", "--out", {str(out)!r},
             *{TINY!r}]) == 0
assert main(["params", "--train"]) == 0
experiment = load_experiment({str(experiment)!r})
print(json.dumps({{"cells": [cell.train for cell in experiment.cells]}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 2 and all(float(r["mat_reward"]) == 0.5 for r in rows)  # paid every step
    assert all(float(r["steady_pay"]) == 0.5 and float(r["beta1"]) == 0.5 for r in rows)  # beta0
    assert json.loads((out / "config.json").read_text())["train"]["steady_pay"] == 0.5
    assert re.search(r"^steady_pay +float +0.25 ", done.stdout, re.M)  # caring params --train
    assert json.loads(done.stdout.splitlines()[-1])["cells"][0]["steady_pay"] == 0.5


def test_every_method_is_registered_with_a_file_of_its_own():
    files = {Path(sys.modules[stream.__module__].__file__).stem for stream in STREAMS.values()}
    methods = {"ppo", "rlmf", "ppo-lagrangian", "choice", "tom", "rlhf", "rlaif", "kindness", "kickstart"}
    assert set(STREAMS) == methods
    assert files == {
        "ppo",
        "rlmf",
        "lagrangian",
        "choice",
        "tom",
        "rlhf",
        "kindness",
        "kickstart",
    }  # rlaif: rlhf's
    with pytest.raises(ConfigError, match="unknown method 'nope'; valid methods: ppo, rlmf"):
        get_stream("nope")


def test_a_stream_joins_its_settings_to_train_config_and_checks_them():
    fields = TrainConfig.__dataclass_fields__
    assert {"mat_penalty", "labels", "cost_limit", "choice_steps", "tom_coef"} <= set(fields)
    with pytest.raises(ConfigError, match="segment_length=16 exceeds rollout=8"):
        build_config(TrainConfig, {"method": "rlhf", "rollout": 8})
    build_config(TrainConfig, {"method": "ppo", "rollout": 8})  # RLHF's rule binds RLHF only
    with pytest.raises(ConfigError, match="unknown TrainConfig key 'nope'"):
        build_config(TrainConfig, {"nope": 1})


def test_each_world_has_its_own_default_recipe():
    nursery, lava = train_config(get_task("nursery")), train_config(get_task("lava"))
    assert (nursery.method, nursery.beta_schedule, nursery.mat_learned_weight, nursery.steps) == (
        "rlmf", "adaptive", 0.1, 12_000_000,
    )  # fmt: skip
    assert (lava.steps, lava.reward_scale, lava.mat_penalty, lava.mat_learned_weight) == (5_000_000, 1, 25, 0)
    assert (lava.critics, lava.value_norm, lava.adv_norm) == ("separate", True, "joint")  # RLMF's lava recipe
    ppo = train_config(get_task("lava"), {"method": "ppo"})  # other methods: the world's own defaults
    assert (ppo.steps, ppo.critics, ppo.adv_norm) == (1_500_000, "shared", "per-stream")
    assert train_config(get_task("lava"), {"steps": 7}).steps == 7  # the user's settings win
