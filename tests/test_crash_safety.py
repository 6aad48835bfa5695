"""Crash safety: a run killed at any write point resumes to the same bytes as a run never interrupted; a
full disk is one line and resumable; run directories we did not write are one line, nothing overwritten.

The kills happen in one subprocess (`harness`, one torch thread) that forks a child per case: the child
trains with CARING_CRASH_AT naming a write point and its occurrence and exits there (`caring.files`),
the next child resumes as a user would, and metrics.csv and mother.safetensors are compared with an
uninterrupted run's. The write points are not listed by hand: a traced run records every one it passes,
and every point at which a kill leaves other files than at the one before is a case (`crashes`).
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from functools import partial
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from analysis.cli import main
from caring import files
from caring.config import train_config
from caring.files import CRASH_ENV, CRASH_STATUS, TEMP_SUFFIX, read_safetensors
from caring.tasks import get_task
from caring.train import start_run
from worlds.config import build_config

WORLD = {"max_cycles": 10, "birth_step": 3}  # short episodes: worlds reset within the run
SETTINGS = {"worlds": 4, "rollout": 4, "epochs": 1, "minibatches": 1, "hidden": 8, "checkpoint_every": 2,
            "demo_episodes": 1, "seed": 7}  # fmt: skip
UPDATES = 3  # a checkpoint at 2 and at the end (3): rows before, between and after checkpoints
M_FILES = ("maternal.json", "maternal.safetensors")  # what rlmf writes after config.json, before training
COMPARED = ("metrics.csv", "mother.safetensors")


# ---------------------------------------------------------------------------- the subprocess
PER_UPDATE = SETTINGS["worlds"] * 2 * SETTINGS["rollout"]  # two mothers per world


def train(out: Path, method: str) -> None:
    """What `caring train` does, without progress bar and plots: start the run, or resume it if its
    config.json was written (as a user re-running the command would), and train to the end."""
    task = get_task("nursery")
    config = train_config(task, {**SETTINGS, "method": method, "steps": UPDATES * PER_UPDATE})
    world = build_config(task.config_class, WORLD)
    resume = (out / "config.json").exists()
    start_run(out, world, config, "cpu", resume, log=lambda message: None).run()


def in_child(work, crash: str | None = None, wait: bool = True) -> int:
    """Run `work()` in a forked child (CARING_CRASH_AT=`crash` there); its exit status, or its pid."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            if crash:
                os.environ[CRASH_ENV] = crash
            work()
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) if wait else pid


def traced(out: Path, method: str) -> list[str]:
    """An uninterrupted run, in this process (so that the forked children start warm); the write points
    it passed, in order."""
    points: list[str] = []
    crash_point, files.crash_point = files.crash_point, points.append
    try:
        train(out, method)
    finally:
        files.crash_point = crash_point
    return points


def outcome(run: Path, reference: Path) -> dict:
    return {
        "same": [(run / n).read_bytes() == (reference / n).read_bytes() for n in COMPARED],
        "speed_rows": len((run / "speed.csv").read_text().splitlines()),
        "leftovers": sorted(p.name for p in run.iterdir() if p.name.endswith(TEMP_SUFFIX)),
    }


def killed_when(out: Path, method: str, ready, reference: Path) -> dict:
    """A real kill -9 of a training child as soon as `ready()` holds, then a resume."""
    pid = in_child(lambda: train(out, method), wait=False)
    while not ready():
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    state = sorted(p.name for p in out.iterdir())
    resumed = in_child(lambda: train(out, method))
    return {"status": status, "files_at_kill": state, "resumed": resumed, **outcome(out, reference)}


def crashes(points: list[str], method: str) -> list[str]:
    """POINT:N for every point at which a kill leaves other files than at the point before: "X:before"
    leaves what the previous write's last stage left (nothing is written between two writes), so only
    the first is kept. The rlmf run adds M's fit (config.json written, M not yet) and M's writes."""
    named = [f"{p}:{points[: i + 1].count(p)}" for i, p in enumerate(points)]
    kept = [c for i, c in enumerate(named) if i == 0 or not points[i].endswith(":before")]
    if method == "rlmf":
        return [c for c in kept if c.startswith("config.json:renamed:") or c.partition(":")[0] in M_FILES]
    return kept


def harness(root: Path) -> dict:
    torch.set_num_threads(1)
    report: dict = {}
    for method in ("ppo", "rlmf"):
        reference = root / method / "reference"
        points = traced(reference, method)
        cases = []
        for i, crash in enumerate(crashes(points, method)):
            run = root / method / f"case{i}"
            status = in_child(partial(train, run, method), crash)
            resumed = in_child(partial(train, run, method))
            cases.append({"crash": crash, "status": status, "resumed": resumed, **outcome(run, reference)})
            shutil.rmtree(run)
        report[method] = {"points": points, "cases": cases}
    fit = root / "rlmf" / "killed_in_fit"
    report["rlmf"]["sigkill"] = killed_when(
        fit, "rlmf", lambda: (fit / "config.json").exists(), root / "rlmf" / "reference"
    )
    rows = root / "ppo" / "killed_in_training"
    report["ppo"]["sigkill"] = killed_when(
        rows,
        "ppo",
        lambda: (rows / "metrics.csv").exists() and (rows / "metrics.csv").read_text().count("\n") >= 2,
        root / "ppo" / "reference",
    )
    return report


if __name__ == "__main__":
    out = Path(sys.argv[1])
    (out / "report.json").write_text(json.dumps(harness(out)))


# ---------------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def kills(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("kills")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop(CRASH_ENV, None)
    done = subprocess.run([sys.executable, __file__, str(root)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((root / "report.json").read_text())


STAGES = {  # every stage of every file a checkpoint or a log row writes
    "write_atomic": ("before", "torn", "written", "renamed"),
    "append_text": ("before", "torn", "appended"),
}


def test_a_kill_at_any_write_of_a_checkpoint_or_a_log_resumes_to_the_same_bytes(kills):
    points, cases = kills["ppo"]["points"], kills["ppo"]["cases"]
    for name, kind in (("config.json", "write_atomic"), ("checkpoint.safetensors", "write_atomic"),
                       ("checkpoint.json", "write_atomic"), ("mother.safetensors", "write_atomic"),
                       ("metrics.csv", "append_text"), ("speed.csv", "append_text"),
                       ("mother_0000000.safetensors", "write_atomic")):  # fmt: skip
        assert {f"{name}:{stage}" for stage in STAGES[kind]} <= set(points), name
    checkpoints = 2  # at update 2 and at the end: three files each; every update appends two log rows
    snapshots = 1  # the untrained mother (snapshot_every = 25 keeps no other in 3 updates)
    assert len(points) == len(STAGES["write_atomic"]) * (1 + snapshots + 3 * checkpoints) + 2 * 3 * UPDATES
    assert [case["crash"] for case in cases] == crashes(points, "ppo")
    issue = {  # the cases issue 16 found: a torn first row, rows and no checkpoint yet, a kill right after
        # the checkpoint's rename (the old code had a second one), the final export of the mother
        "metrics.csv:torn:1", "speed.csv:appended:1", "checkpoint.safetensors:renamed:1",
        "mother.safetensors:torn:2",
    }  # fmt: skip
    assert issue <= {case["crash"] for case in cases}
    for case in cases:
        assert case["status"] == CRASH_STATUS, case  # it died where it was told to
        assert case["resumed"] == 0 and case["same"] == [True, True], case
        assert case["speed_rows"] == 1 + UPDATES and not case["leftovers"], case


def test_a_kill_while_the_maternal_model_is_fitted_or_written_resumes_to_the_same_bytes(kills):
    cases = kills["rlmf"]["cases"]
    written = {f"{name}:{stage}" for name in M_FILES for stage in ("torn", "written", "renamed")}
    assert {case["crash"].rpartition(":")[0] for case in cases} == {"config.json:renamed", *written}
    for case in cases:
        assert case["status"] == CRASH_STATUS and case["resumed"] == 0 and case["same"] == [True, True], case
    killed = kills["rlmf"]["sigkill"]  # a real kill -9 the moment config.json exists: M is being fitted
    assert killed["status"] == -signal.SIGKILL and "maternal.safetensors" not in killed["files_at_kill"]
    assert killed["resumed"] == 0 and killed["same"] == [True, True] and not killed["leftovers"]


def test_a_real_kill_during_training_resumes_to_the_same_bytes(kills):
    killed = kills["ppo"]["sigkill"]
    assert killed["status"] == -signal.SIGKILL and "metrics.csv" in killed["files_at_kill"]
    assert killed["resumed"] == 0 and killed["same"] == [True, True] and killed["speed_rows"] == 1 + UPDATES


# ---------------------------------------------------------------------------- in this process, on the CLI
def cli_train(out: Path, method: str = "ppo", updates: int = UPDATES, resume: bool = False) -> int:
    """`caring train` of the same tiny run as `train` (or its --resume)."""
    args = ["train", "nursery", "--out", str(out), "--steps", str(updates * PER_UPDATE)]
    if resume:
        return main([*args, "--resume"])
    world = [a for key, value in WORLD.items() for a in ("--set", f"{key}={value}")]
    training = [a for k, v in SETTINGS.items() if k != "seed" for a in ("--train-set", f"{k}={v}")]
    return main([*args, "--method", method, "--seed", str(SETTINGS["seed"]), *world, *training])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny runs are fastest on one thread (and the golden runs' byte-equality needs the same count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """reference(method, updates): the directory of an uninterrupted run (made once per module)."""
    made: dict[tuple[str, int], Path] = {}

    def get(method: str = "ppo", updates: int = UPDATES) -> Path:
        if (method, updates) not in made:
            made[method, updates] = tmp_path_factory.mktemp(f"{method}{updates}") / "run"
            assert cli_train(made[method, updates], method, updates) == 0
        return made[method, updates]

    return get


def same_as(run: Path, reference: Path) -> bool:
    return all((run / name).read_bytes() == (reference / name).read_bytes() for name in COMPARED)


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("caring: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


FULL_DISK = {  # where the disk fills: (its occurrence, method, what the line says of the last checkpoint)
    "metrics.csv:torn": (3, "ppo", "the last good checkpoint is update 2"),  # a row after checkpoint 2
    "checkpoint.safetensors:torn": (2, "ppo", "the last good checkpoint is update 2"),
    "mother.safetensors:written": (2, "ppo", "the last good checkpoint is update 3"),  # the final export
    "config.json:torn": (1, "ppo", "there is no checkpoint yet (a resume starts the run over)"),
    "maternal.safetensors:torn": (1, "rlmf", "there is no checkpoint yet (a resume starts the run over)"),
}


@pytest.mark.parametrize("point", FULL_DISK)
def test_a_full_disk_is_one_line_and_the_run_resumes_to_the_same_bytes(
    point, reference, tmp_path, monkeypatch, capsys
):
    occurrence, method, last = FULL_DISK[point]
    reached = []

    def disk_fills(at: str) -> None:
        reached.append(at)
        if reached.count(point) == occurrence and at == point:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    run = tmp_path / "run"
    monkeypatch.setattr(files, "crash_point", disk_fills)
    assert cli_train(run, method) == 2
    name = point.partition(":")[0]
    assert one_line(capsys) == f"caring: error: no space left on device writing {run / name}; {last}\n"
    assert not [p for p in run.iterdir() if p.name.endswith(TEMP_SUFFIX)]  # a failed write cleans up
    monkeypatch.setattr(files, "crash_point", lambda at: None)  # space is freed
    assert cli_train(run, method, resume=(run / "config.json").exists()) == 0
    assert same_as(run, reference(method))


def test_a_finished_run_whose_mother_file_is_damaged_gets_her_back_from_its_checkpoint(
    reference, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(reference(), run)
    mother = run / "mother.safetensors"
    mother.write_bytes(mother.read_bytes()[:200])  # killed while she was written, by the old code
    assert main(["eval", "nursery", "--policy", str(run), "--episodes", "2"]) == 2
    assert f"`caring train nursery --out {run} --resume` writes her again" in one_line(capsys)
    assert cli_train(run, resume=True) == 0
    assert same_as(run, reference())
    assert main(["eval", "nursery", "--policy", str(run), "--episodes", "2"]) == 0


def test_a_checkpoint_from_before_the_seal_resumes_and_its_interrupted_pair_is_found(
    reference, tmp_path, capsys
):
    """The old code wrote checkpoint.safetensors and checkpoint.json by two renames; killed between
    them, it left the new weights beside the old JSON and the new JSON in checkpoint.json.tmp."""
    run = tmp_path / "run"
    assert cli_train(run, updates=2) == 0  # its final checkpoint is update 2
    tensors, header = read_safetensors(run / "checkpoint.safetensors")
    meta = json.loads(header["caring"])
    del meta["logs"]  # the old code counted rows, not bytes
    save_file(tensors, str(run / "checkpoint.safetensors"))  # no metadata inside
    (run / "checkpoint.json.tmp").write_text(json.dumps(meta))
    (run / "checkpoint.json").write_text(json.dumps({**meta, "update": 1}))  # the previous pair's
    assert cli_train(run, resume=True) == 0
    assert same_as(run, reference())
    assert not (run / "checkpoint.json.tmp").exists()


def test_rerunning_a_demo_killed_while_its_maternal_model_was_fitted_continues_it(
    tmp_path, monkeypatch, capsys
):
    """`caring demo` killed during M's fit (its run directory holds only config.json) runs again."""
    import caring.commands
    from caring.streams.rlmf import RLMF

    tiny = {key: value for key, value in SETTINGS.items() if key != "seed"}
    train_config_of = caring.commands.train_config
    monkeypatch.setattr(
        caring.commands,
        "train_config",
        lambda task, o, preset="": train_config_of(task, {**tiny, **o}, preset),
    )
    demo = ["demo", "--out", str(tmp_path), "--steps", str(2 * PER_UPDATE), "--episodes", "1",
            *(a for key, value in WORLD.items() for a in ("--set", f"{key}={value}"))]  # fmt: skip

    def killed(self, log):
        raise KeyboardInterrupt

    prepare = RLMF.prepare
    monkeypatch.setattr(RLMF, "prepare", killed)
    assert main(demo) == 130
    assert [p.name for p in (tmp_path / "mother").iterdir()] == ["config.json"]
    monkeypatch.setattr(RLMF, "prepare", prepare)
    assert main(demo) == 0
    assert len((tmp_path / "mother" / "metrics.csv").read_text().splitlines()) == 3
    assert (tmp_path / "nursery_trained.gif").exists()


# -------------------------------------------------------------------------- run directories we did not write
def write(name: str, data: str | bytes):
    return lambda run: (run / name).write_bytes(data.encode() if isinstance(data, str) else data)


def edit_config(change):
    def edit(run: Path) -> None:
        saved = json.loads((run / "config.json").read_text())
        change(saved)
        (run / "config.json").write_text(json.dumps(saved))

    return edit


def reseal(metadata):
    """Rewrite the checkpoint with other sealed metadata: `metadata(meta)` edits it or returns the text."""

    def edit(run: Path) -> None:
        tensors, header = read_safetensors(run / CKPT)
        meta = json.loads(header["caring"])
        text = metadata(meta)
        save_file(tensors, str(run / CKPT), {"caring": text or json.dumps(meta)})

    return edit


def edit_tensors(name: str, change):
    """Rewrite tensors of a weights file (`change` gives the new ones; None drops one)."""

    def edit(run: Path) -> None:
        tensors, header = read_safetensors(run / name)
        for key, value in change(tensors).items():
            if value is None:
                del tensors[key]
            else:
                tensors[key] = value
        save_file(tensors, str(run / name), header or None)

    return edit


def unseal(run: Path) -> None:
    """A checkpoint from before the seal, whose checkpoint.json is `{}`."""
    tensors, _ = read_safetensors(run / CKPT)
    save_file(tensors, str(run / CKPT))
    (run / "checkpoint.json").write_text("{}")


CKPT, MOTHER = "checkpoint.safetensors", "mother.safetensors"
NAN = float("nan")
HOSTILE = {  # what was done to a finished run: (the change, the commands refusing it, their message)
    "config.json of {}": (write("config.json", "{}"), "eval resume", "config.json: missing field world"),
    "config.json of []": (
        write("config.json", "[]"),
        "eval resume",
        "config.json must hold a JSON object, got a list",
    ),
    'config.json of {"world": "nursery"}': (
        write("config.json", '{"world": "nursery"}'),
        "eval resume",
        "config.json: field world must be an object of settings, got a string",
    ),
    "config.json binary": (write("config.json", b"\x89PNG\r\n\x1a\n\x00\xff"), "eval resume", "corrupt JSON"),
    "config.json NaN setting": (
        edit_config(lambda c: c["train"].update(lr=NAN)),
        "eval resume",
        "config.json: field train: lr=nan is not a finite number",
    ),
    "config.json unknown world": (
        edit_config(lambda c: c.update(world_name="jungle")),
        "eval resume",
        "config.json: field world_name: unknown world 'jungle'",
    ),
    "config.json unknown setting": (
        edit_config(lambda c: c["train"].update(wings=2)),
        "eval resume",
        "config.json: field train: unknown TrainConfig key 'wings'",
    ),
    "config.json unknown field": (
        edit_config(lambda c: c.update(notes="x")),
        "eval resume",
        "config.json: unknown field notes; valid: world_name, world, train",
    ),
    "config.json deleted": (lambda run: (run / "config.json").unlink(), "resume", "is not a run directory"),
    "config.json deleted, started again": (
        lambda run: (run / "config.json").unlink(),
        "fresh",
        "holds metrics.csv but no config.json",
    ),
    "a lava run resumed as a nursery run": (
        edit_config(lambda c: c.update(world_name="lava", world={})),
        "resume",
        "holds a lava run, not a nursery one; resume it with `caring train lava --out",
    ),
    "checkpoint metadata {}": (reseal(lambda m: "{}"), "resume", "missing field metadata.update"),
    "checkpoint metadata not JSON": (reseal(lambda m: "{"), "resume", "its metadata is not JSON"),
    "checkpoint update a string": (
        reseal(lambda m: m.update(update="three")),
        "resume",
        "field metadata.update must be an integer, got a string",
    ),
    "checkpoint update negative": (reseal(lambda m: m.update(update=-1)), "resume", "a negative count"),
    "checkpoint schedule unknown field": (
        reseal(lambda m: m["schedule"].update(speed=1)),
        "resume",
        "unknown field metadata.schedule.speed",
    ),
    "checkpoint schedule out of range": (
        reseal(lambda m: m["schedule"].update(beta0=7.0)),
        "resume",
        "field metadata.schedule: beta0=7.0 must be in [0, 1]",
    ),
    "checkpoint NaN beta1": (
        reseal(lambda m: m["schedule"].update(beta=NAN)),
        "resume",
        "field metadata.schedule.beta is nan, not a finite number",
    ),
    "checkpoint optimiser of other parameters": (
        reseal(lambda m: m["opt_param_groups"][0].update(params=[0, 1])),
        "resume",
        "field metadata.opt_param_groups[0].params must be a list of 10, got a list of 2",
    ),
    "checkpoint counting more log bytes than there are": (
        reseal(lambda m: m["logs"].update({"metrics.csv": 10**6})),
        "resume",
        "fewer than the 1000000 of update 3",
    ),
    "checkpoint.json {} beside an unsealed checkpoint": (
        unseal,
        "resume",
        "checkpoint.json: missing field metadata.update",
    ),
    "checkpoint weights as int8": (
        edit_tensors(CKPT, lambda t: {"net.trunk_1.weight": t["net.trunk_1.weight"].to(torch.int8)}),
        "resume",
        "does not fit the network: trunk_1.weight is int8, expected float32 (weights are never cast)",
    ),
    "checkpoint NaN weights": (
        edit_tensors(CKPT, lambda t: {"net.policy.bias": torch.full_like(t["net.policy.bias"], NAN)}),
        "resume",
        "does not fit the network: policy.bias holds NaN or infinite values",
    ),
    "checkpoint without a world tensor": (
        edit_tensors(CKPT, lambda t: {"world.energy": None}),
        "resume",
        "does not fit this run's world: tensor world.energy is missing",
    ),
    "checkpoint with an unknown tensor": (
        edit_tensors(CKPT, lambda t: {"bogus": torch.zeros(1)}),
        "resume",
        "unexpected tensor bogus",
    ),
    "checkpoint sampler cut short": (
        edit_tensors(CKPT, lambda t: {"sampler": t["sampler"][:100].clone()}),
        "resume",
        "does not fit the sampler: sampler has shape (100,)",
    ),
    "checkpoint optimiser state of another shape": (
        edit_tensors(CKPT, lambda t: {"opt.0.exp_avg": torch.zeros(3)}),
        "resume",
        "does not fit the optimiser: opt.0.exp_avg has shape (3,), expected (8, 500)",
    ),
    "checkpoint optimiser state NaN": (
        edit_tensors(CKPT, lambda t: {"opt.2.exp_avg_sq": torch.full_like(t["opt.2.exp_avg_sq"], NAN)}),
        "resume",
        "does not fit the optimiser: opt.2.exp_avg_sq holds NaN or infinite values",
    ),
    "checkpoint truncated": (
        lambda run: (run / CKPT).write_bytes((run / CKPT).read_bytes()[:100]),
        "resume",
        "corrupt checkpoint",
    ),
    "checkpoint deleted, checkpoint.json kept": (
        lambda run: (run / CKPT).unlink(),
        "resume",
        "missing checkpoint file",
    ),
    "metrics.csv deleted": (
        lambda run: (run / "metrics.csv").unlink(),
        "resume",
        "metrics.csv holds 0 bytes",
    ),
    "mother as int8": (
        edit_tensors(MOTHER, lambda t: {"trunk_2.weight": t["trunk_2.weight"].to(torch.int8)}),
        "eval",
        "mother.safetensors does not fit the network: trunk_2.weight is int8, expected float32",
    ),
    "mother with a policy head for 5 actions": (
        edit_tensors(MOTHER, lambda t: {"policy.weight": t["policy.weight"][:5].clone()}),
        "eval",
        "mother.safetensors does not fit the network: policy.weight has shape (5, 8), expected (9, 8)",
    ),
    "mother with an unknown tensor": (
        edit_tensors(MOTHER, lambda t: {"extra.weight": torch.zeros(2)}),
        "eval",
        "mother.safetensors does not fit the network: unexpected tensor extra.weight",
    ),
    "mother missing": (lambda run: (run / MOTHER).unlink(), "eval", "has no trained mother yet"),
}
COMMANDS = {
    "eval": lambda run: ["eval", "nursery", "--policy", str(run), "--episodes", "1"],
    "resume": lambda run: ["train", "nursery", "--out", str(run), "--resume"],
    "fresh": lambda run: ["train", "nursery", "--out", str(run), "--method", "ppo"],
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_run_directory_we_did_not_write_is_one_line_and_nothing_is_overwritten(
    case, reference, tmp_path, capsys
):
    change, commands, message = HOSTILE[case]
    run = tmp_path / "run"
    shutil.copytree(reference(), run)
    change(run)
    before = snapshot(run)
    for command in commands.split():
        assert main(COMMANDS[command](run)) == 2, command
        assert message in one_line(capsys), command
        assert snapshot(run) == before


def test_a_maternal_model_stored_as_int8_is_refused_not_cast(reference, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference("rlmf"), run)
    weights, _ = read_safetensors(run / "maternal.safetensors")
    save_file({k: v.to(torch.int8) for k, v in weights.items()}, str(run / "maternal.safetensors"))
    before = snapshot(run)
    assert cli_train(run, "rlmf", resume=True) == 2
    err = one_line(capsys)
    assert "maternal.safetensors does not fit this world's M: " in err and "is int8, expected float32" in err
    assert snapshot(run) == before


def test_a_run_being_written_by_another_process_is_refused_in_one_line(tmp_path, capsys):
    """Two writers of one run (a sweep worker orphaned by a killed sweep, two `--resume`s) would
    interleave checkpoints: while one trains, the other is refused, and the run is left as it was."""
    out = tmp_path / "run"
    train(out, "ppo")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with files.run_lock(out):  # another process's open description of the directory, in effect
        with pytest.raises(files.ConfigError, match="being written by another process"):
            task = get_task("nursery")
            config = train_config(task, {**SETTINGS, "steps": 4 * PER_UPDATE})
            start_run(out, build_config(task.config_class, WORLD), config, "cpu", True)
        code = main(["train", "nursery", "--out", str(out), "--resume", "--steps", str(4 * PER_UPDATE)])
    assert code != 0 and "being written by another process" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    with files.run_lock(out):  # released: the lock is held only while writing
        pass


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signals are Linux's (prctl)")
def test_sweep_workers_die_with_their_sweep(tmp_path):
    """A sweep killed by a signal cannot stop its pool; its workers must not train on."""
    script = (
        "import multiprocessing, time\n"
        "from analysis.sweep import start_worker\n"
        "import os\n"
        "pool = multiprocessing.get_context('spawn').Pool(1, initializer=start_worker)\n"
        "worker = pool.apply(os.getpid)\n"
        "pool.apply_async(time.sleep, (60,))  # busy, like a training cell: deaf to its task queue\n"
        "time.sleep(1)\n"
        "print(worker, flush=True)\n"
        "time.sleep(120)\n"
    )
    sweep = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(sweep.stdout.readline())
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:  # gone, or a zombie nobody has reaped yet (field 3 of /proc/PID/stat is its state)
            if Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except FileNotFoundError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the sweep's worker outlived it")
