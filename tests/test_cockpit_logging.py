"""The researcher's cockpit: a run is visible while it runs (progress lines in a log, a live line on a
terminal, TensorBoard that agrees with metrics.csv across kills, plots redrawn at checkpoints), and its
training settings can come from a file, checked like --train-set."""

import csv
import dataclasses
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import caring.progress
from analysis.cli import main
from caring.config import TrainConfig, train_config
from caring.files import CRASH_ENV, CRASH_STATUS
from caring.progress import Cockpit
from caring.tasks import get_task
from caring.train import start_run
from worlds.nursery.config import NurseryConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = {"worlds": 8, "rollout": 8, "hidden": 16, "checkpoint_every": 2, "epochs": 1, "minibatches": 1}
PER_UPDATE = 8 * 2 * 8  # worlds x mothers x rollout
TINY_SETS = [a for key, value in TINY.items() for a in ("--train-set", f"{key}={value}")]


def train_args(out: Path, updates: int, *extra: str) -> list[str]:
    return ["train", "nursery", "--method", "ppo", "--steps", str(updates * PER_UPDATE), "--seed", "3",
            "--out", str(out), *extra]  # fmt: skip


def progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if " update " in line and "agent-steps/s" in line]


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("caring: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------- progress
def test_a_log_gets_the_first_and_the_last_update_and_a_line_every_n_seconds(tmp_path, capsys):
    assert main(train_args(tmp_path / "quiet", 3, *TINY_SETS, "--no-tensorboard")) == 0
    out = capsys.readouterr().out
    lines = progress_lines(out)  # captured stdout is not a terminal: plain lines, none in 30 s but these
    assert [line.split(" update ")[1].split()[0] for line in lines] == ["1/3", "3/3"]
    for field in (
        "384 agent-steps",
        "agent-steps/s",
        "ETA 0:00:00",
        "baby_survival ",
        "harm_rate ",
        "beta1 ",
    ):
        assert field in lines[1], (field, lines[1])
    assert "TensorBoard" not in out and not (tmp_path / "quiet" / "tb").exists()  # --no-tensorboard

    assert (
        main(train_args(tmp_path / "every", 3, *TINY_SETS, "--no-tensorboard", "--progress-every", "0")) == 0
    )
    lines = progress_lines(capsys.readouterr().out)
    assert [line.split(" update ")[1].split()[0] for line in lines] == ["1/3", "2/3", "3/3"]


def test_a_terminal_gets_one_live_line(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    task = get_task("nursery")
    config = train_config(task, {**TINY, "method": "ppo", "steps": 3 * PER_UPDATE})
    trainer = start_run(tmp_path / "run", NurseryConfig(), config, "cpu", False, log=lambda m: None)
    screen = Terminal()
    with Cockpit(trainer, every_s=0, tensorboard=False, stream=screen) as cockpit:
        trainer.run(cockpit)
    shown = screen.getvalue()
    assert "3/3" in shown and "baby_survival=" in shown and "beta1=" in shown
    assert shown.count("\r") >= 3 and not progress_lines(shown)  # redrawn in place, not a line per update


@pytest.mark.parametrize("every", ["-1", "nan", "soon"])
def test_progress_every_must_be_a_finite_number_of_seconds(tmp_path, every, capsys):
    assert main(train_args(tmp_path / "r", 1, "--progress-every", every)) == 2
    assert "--progress-every must be" in one_line(capsys)


def test_plots_are_redrawn_at_checkpoints_and_a_failing_plot_never_ends_the_run(
    tmp_path, monkeypatch, capsys
):
    drawn = []
    real = caring.progress.plot_run

    def plot_run(run: Path) -> list[Path]:
        drawn.append(len((run / "metrics.csv").read_text().splitlines()) - 1)  # rows so far
        if len(drawn) == 1:
            raise RuntimeError("no room on the canvas")
        return real(run)

    monkeypatch.setattr(caring.progress, "plot_run", plot_run)
    run = tmp_path / "run"
    assert main(train_args(run, 4, *TINY_SETS, "--no-tensorboard", "--progress-every", "0")) == 0
    assert drawn == [2, 4]  # at the checkpoint of update 2 (it failed), then at the end
    err = capsys.readouterr().err
    assert err.count("caring: warning: could not draw the plots") == 1 and "no room on the canvas" in err
    assert len((run / "metrics.csv").read_text().splitlines()) == 5  # the run went on to its end
    assert (run / "learning_curves.png").stat().st_size > 0 and (run / "beta_harm.png").exists()
    assert not list(run.glob("*.partial")) and not list(run.glob("*.tmp.png"))


# ---------------------------------------------------------------------------- TensorBoard
def scalars(tb: Path) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows: (step, value) per tag, with its purging of what a killed session left."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tb))
    board.Reload()
    return {tag: [(e.step, e.value) for e in board.Scalars(tag)] for tag in board.Tags()["scalars"]}


def raw_steps(tb: Path, tag: str) -> list[int]:
    """Every event of `tag` in every event file, purged or not."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return [
        event.step
        for path in sorted(tb.glob("events.out.tfevents.*"))
        for event in EventFileLoader(str(path)).Load()
        if any(value.tag == tag for value in event.summary.value)
    ]


def same_as_csv(run: Path, updates: int) -> None:
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    shown = scalars(run / "tb")
    assert len(rows) == updates and set(rows[0]) - {"agent_steps"} <= set(shown)
    for column in rows[0]:
        if column == "agent_steps":
            continue
        assert [step for step, _ in shown[column]] == [int(r["agent_steps"]) for r in rows], column
        for (_, value), row in zip(shown[column], rows, strict=True):
            want = float(row[column])
            assert (math.isnan(value) and math.isnan(want)) or math.isclose(value, want, rel_tol=1e-5), column


@pytest.mark.parametrize(
    "kill",
    [
        "metrics.csv:appended:4",  # TensorBoard holds update 3, past the checkpoint of update 2
        "checkpoint.safetensors:renamed:1",  # checkpoint 2 committed, its update not yet in TensorBoard
    ],
)
def test_tensorboard_holds_the_csv_after_a_kill_and_a_resume(tmp_path, kill):
    pytest.importorskip(
        "tensorboard", reason="TensorBoard is an optional extra: pip install -e '.[tensorboard]'"
    )
    run, log = tmp_path / "run", tmp_path / "log"
    env = {**os.environ, CRASH_ENV: kill, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    cli = [sys.executable, "-m", "analysis.cli", *train_args(run, 4, *TINY_SETS, "--progress-every", "0")]
    with log.open("w") as f:  # `caring train ... > log 2>&1`, killed
        status = subprocess.run(cli, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    assert status == CRASH_STATUS, log.read_text()
    written = progress_lines(log.read_text())
    assert written and written[0].split(" update ")[1].startswith("1/4")  # flushed before the kill
    logged = 3 if kill.startswith("metrics") else 1  # updates in TensorBoard before the kill
    assert raw_steps(run / "tb", "harm_rate") == [u * PER_UPDATE for u in range(1, logged + 1)]

    assert main(["train", "nursery", "--out", str(run), "--resume", "--progress-every", "0"]) == 0
    same_as_csv(run, 4)  # every update once, with the CSV's values
    raw = raw_steps(run / "tb", "harm_rate")
    assert len(raw) == logged + 3  # from the checkpoint's update 2 on, logged again: the purge is what hides


def test_a_run_that_gets_tensorboard_half_way_gets_every_row_of_its_csv(tmp_path, capsys):
    pytest.importorskip(
        "tensorboard", reason="TensorBoard is an optional extra: pip install -e '.[tensorboard]'"
    )
    run = tmp_path / "run"
    assert main(train_args(run, 2, *TINY_SETS, "--no-tensorboard")) == 0
    assert not (run / "tb").exists()
    capsys.readouterr()
    assert main(["train", "nursery", "--out", str(run), "--resume", "--steps", str(3 * PER_UPDATE)]) == 0
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {run / 'tb'}" in out and "tb/ (TensorBoard)" in out
    same_as_csv(run, 3)  # updates 1 and 2 from the CSV, 3 as it was trained
    assert [step for step, _ in scalars(run / "tb")["agent_steps_per_s"]] == [3 * PER_UPDATE]


# ---------------------------------------------------------------------------- --train-config
def test_a_train_config_file_is_the_same_as_train_set_and_the_command_line_wins(tmp_path, capsys):
    assert main(train_args(tmp_path / "sets", 2, *TINY_SETS, "--no-tensorboard")) == 0
    settings = tmp_path / "tiny.toml"
    toml = "\n".join(f"{key} = {value}" for key, value in TINY.items())
    settings.write_text(f'{toml}\nlr = 0.5\nseed = 9\nmethod = "rlmf"\n')  # lr, seed, method: overridden
    args = train_args(tmp_path / "file", 2, "--train-config", str(settings), "--train-set", "lr=0.0003")
    assert main([*args, "--no-tensorboard"]) == 0
    for name in ("config.json", "metrics.csv"):
        assert (tmp_path / "file" / name).read_text() == (tmp_path / "sets" / name).read_text(), name


BAD_FILES = {  # file name, its text, what the line must say besides the file's name
    "syntax": ("t.toml", "worlds = [8", "is not valid TOML"),
    "unknown key": ("t.toml", "wrolds = 8", "unknown TrainConfig key 'wrolds'"),
    "out of range": ("t.toml", "lr = -1.0", "lr=-1.0 is out of range"),
    "not finite": ("t.toml", "lr = nan", "lr=nan is not a finite number"),
    "wrong type": ("t.toml", 'worlds = "many"', "worlds: expected int"),
    "bad choice": ("t.toml", 'beta_schedule = "hope"', "beta_schedule: 'hope' is not one of"),
    "a table": ("t.toml", "[ppo]\nlr = 0.1", "unknown TrainConfig key 'ppo'"),
    "not text": ("t.toml", b"\xff\xfe", "is not text"),
    "wrong suffix": ("t.yaml", "lr = 0.1", "must end in .json or .toml"),
    "missing": ("absent.toml", None, "cannot read config file"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_train_config_file_is_one_line_naming_it(tmp_path, case, capsys):
    name, text, message = BAD_FILES[case]
    path = tmp_path / name
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(train_args(tmp_path / "r", 1, "--train-config", str(path))) == 2
    err = one_line(capsys)
    assert str(path) in err and message in err, err
    assert not (tmp_path / "r").exists()  # refused before anything is written


def test_the_command_lines_own_mistake_is_named_as_such_and_a_resume_refuses_a_file(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text("worlds = 8\n")
    assert main(train_args(tmp_path / "r", 1, "--train-config", str(good), "--train-set", "lr=-1")) == 2
    err = one_line(capsys)
    assert "lr=-1.0 is out of range" in err and str(good) not in err
    assert (
        main(["train", "nursery", "--out", str(tmp_path / "r"), "--resume", "--train-config", str(good)]) == 2
    )
    assert "--train-config cannot change a resumed run" in one_line(capsys)


# ---------------------------------------------------------------------------- what the settings are
@pytest.mark.parametrize("world", ["nursery", "lava"])
def test_params_train_lists_every_training_setting_with_its_default_and_range(world, capsys):
    assert main(["params", world, "--train"]) == 0
    lines = capsys.readouterr().out.splitlines()
    defaults = dataclasses.asdict(train_config(get_task(world)))
    fields = dataclasses.fields(TrainConfig)
    assert [line.split()[0] for line in lines] == [f.name for f in fields]
    for line, field in zip(lines, fields, strict=True):
        name, kind, default = line.split()[:3]
        shown = "''" if defaults[name] == "" else str(defaults[name])  # an empty string shows as ''
        assert kind == field.type and default == shown, line
        meta = field.metadata
        assert meta["help"] in line
        if meta["choices"]:
            assert "one of " + "/".join(meta["choices"]) in line
        elif meta["lo"] is not None:
            assert f"[{meta['lo']}, {meta['hi']}]" in line
    assert lines[[f.name for f in fields].index("steps")].split()[2] == (
        "12000000" if world == "nursery" else "5000000"  # lava: RLMF's recipe there (the default method)
    )


def test_train_help_shows_the_defaults_and_where_the_settings_are(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    shown = [
        "--train-config FILE",
        "--progress-every SECONDS",
        "(default: 30)",
        "--no-tensorboard",
        "(default: cpu)",
        "(default: adaptive)",
        "(default: rlmf)",
        "caring params WORLD --train",
    ]
    for part in shown:
        assert part in text, part


def test_a_methods_recipe_in_a_world_sits_between_the_worlds_defaults_and_the_users_settings(
    monkeypatch, capsys
):
    task = get_task("lava")
    recipe = {"rlmf": {"mat_penalty": 25.0, "critics": "separate", "steps": 4_000_000}}
    monkeypatch.setattr(type(task), "method_defaults", recipe)
    rlmf = train_config(task)  # rlmf is the default method
    assert (rlmf.mat_penalty, rlmf.critics, rlmf.steps, rlmf.worlds) == (25.0, "separate", 4_000_000, 128)
    ppo = train_config(task, {"method": "ppo"})  # another method keeps the world's defaults
    assert (ppo.critics, ppo.steps) == ("shared", task.train_defaults["steps"])
    mine = train_config(task, {"method": "rlmf", "mat_penalty": "5"})  # the user's settings win
    assert (mine.mat_penalty, mine.critics) == (5.0, "separate")
    assert main(["params", "lava", "--train", "--method", "ppo"]) == 0
    shown = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()}
    assert (shown["method"], shown["critics"], shown["steps"]) == ("ppo", "shared", "1500000")
    assert main(["params", "lava", "--train"]) == 0
    shown = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()}
    assert (shown["method"], shown["critics"], shown["steps"]) == ("rlmf", "separate", "4000000")


def test_a_world_presets_recipe_sits_over_the_methods_and_under_the_users_settings(tmp_path, capsys):
    """`--preset selective` trains with the selective world's recipe (the marker comparator, plain PPO,
    its own PPO settings and budget) unless told otherwise; the default world keeps its own."""
    task = get_task("nursery")
    recipe = task.preset_train_defaults["selective"]
    selective = train_config(task, {}, "selective")
    assert {key: getattr(selective, key) for key in recipe} == recipe
    assert (selective.method, selective.kin_match) == ("ppo", 4)
    default = train_config(task, {}, "default")
    assert (default.method, default.kin_match, default.lr) == ("rlmf", 0, 3e-4)
    mine = train_config(task, {"method": "rlmf", "kin_match": "2"}, "selective")  # the user's settings win
    assert (mine.method, mine.kin_match, mine.lr) == ("rlmf", 2, recipe["lr"])
    assert main(["params", "nursery", "--train", "--preset", "selective"]) == 0
    shown = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()}
    assert (shown["method"], shown["kin_match"], shown["steps"]) == ("ppo", "4", "64000000")
    # what a run records is what it trained with
    args = ["train", "nursery", "--preset", "selective", "--steps", "128", "--out", str(tmp_path / "run"),
            "--train-set", "worlds=8", "--train-set", "rollout=8", "--train-set", "hidden=16"]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (saved["method"], saved["kin_match"], saved["gamma"], saved["steps"]) == ("ppo", 4, 0.995, 128)
