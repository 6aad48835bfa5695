"""`caring sweep --backend ray`: one Ray task per cell gives the local backend's results to the byte, even
when a worker dies mid-training (Ray retries the task, which resumes the cell's run from its checkpoint);
a finished cell is never run again; and without Ray, or with flags that cannot work, one clear error."""

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

import pytest

from analysis import sweep, sweep_ray
from analysis.cli import main
from caring.files import write_json
from caring.train import Trainer

EXPERIMENT = """
world = "nursery"
seeds = [0]
eval_episodes = 8
scripted = ["expert"]
[world_settings]
max_cycles = 40
[train]
steps = 512
worlds = 8
rollout = 8
hidden = 16
demo_episodes = 3
checkpoint_every = 2
[methods.ppo]
method = "ppo"
[methods.rlmf-exp]
method = "rlmf"
beta_schedule = "exp"
"""
VICTIM = "rlmf-exp__seed0"  # its first attempt's worker dies
DIE_AT_UPDATE = 3  # 4 updates of 128 agent-steps, a checkpoint every 2: after update 2's, amid the next


def dying_cell_task(job: sweep.CellJob) -> sweep.Outcome:
    """The Ray task, recording each attempt (and the checkpoint it found), except that the victim's first
    attempt kills its worker process hard mid-training, as a crash or an out-of-memory kill would: in the
    4th update, after the checkpoint of update 2 and metrics rows for 3. Shipped to the workers by value
    (this module is not importable there); its `sweep_ray.cell_task` is the workers' own, unpatched."""
    cell, _, out, _ = job
    checkpoint = sweep.run_dir(cell, out) / "checkpoint.json"
    found = json.loads(checkpoint.read_text())["update"] if checkpoint.exists() else None
    attempts = out / "attempts"
    attempts.mkdir(exist_ok=True)
    attempt = len(list(attempts.glob(f"{cell.key}.*"))) + 1
    write_json(attempts / f"{cell.key}.{attempt}.json", {"checkpoint_update": found})
    if cell.key == VICTIM and attempt == 1:
        collect = Trainer.collect_rollout

        def collect_then_die(self: Trainer) -> tuple:  # the patch dies with this worker process
            if self.update == DIE_AT_UPDATE:
                os._exit(1)
            return collect(self)

        Trainer.collect_rollout = collect_then_die
    return sweep_ray.cell_task(job)


@pytest.fixture
def ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Ray (the test is skipped without it), its files in a short-lived directory of their own instead of
    /tmp/ray, and no token written to ~/.ray."""
    ray = pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    monkeypatch.setenv("RAY_TMPDIR", temp)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    yield ray
    shutil.rmtree(temp, ignore_errors=True)


def test_a_ray_sweep_survives_a_dying_worker_and_matches_the_local_pool(tmp_path, capsys, monkeypatch, ray):
    spec, local, on_ray = tmp_path / "killed.toml", tmp_path / "local", tmp_path / "ray"
    spec.write_text(EXPERIMENT)
    assert main(["sweep", str(spec), "--out", str(local), "--workers", "2"]) == 0

    monkeypatch.setattr(sweep_ray, "cell_task", dying_cell_task)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        capsys.readouterr()
        assert main(["sweep", str(spec), "--out", str(on_ray), "--backend", "ray", "--workers", "2"]) == 0
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    log = capsys.readouterr().out
    assert "3 cells, 0 already finished, 0 to re-evaluate, a local Ray: 2 CPUs, 0 GPUs" in log
    assert "FAILED" not in log and log.count("[3/3]") == 1

    attempts = {p.stem: json.loads(p.read_text()) for p in (on_ray / "attempts").iterdir()}
    once = {"expert__seed0.1", "ppo__seed0.1", f"{VICTIM}.1"}
    assert set(attempts) == once | {f"{VICTIM}.2"}  # Ray retried the victim's task, once
    assert attempts[f"{VICTIM}.1"] == {"checkpoint_update": None}
    assert attempts[f"{VICTIM}.2"] == {"checkpoint_update": 2}  # the retry resumed from the checkpoint
    victim = ("runs", "rlmf-exp", "seed0", "metrics.csv")
    assert on_ray.joinpath(*victim).read_bytes() == local.joinpath(*victim).read_bytes()  # 4 rows, once
    for name in ("results.csv", "summary.json"):
        assert (on_ray / name).read_bytes() == (local / name).read_bytes(), name
    seconds = json.loads((on_ray / "speed.json").read_text())["train_seconds"]
    assert set(seconds) == {"ppo__seed0", VICTIM}  # wall-clock: apart


def test_a_finished_cell_is_returned_not_run_again(tmp_path):
    spec, out = tmp_path / "done.toml", tmp_path / "out"
    spec.write_text(EXPERIMENT)
    experiment = sweep.load_experiment(spec)
    cell = experiment.cells[0]
    row = {"method": cell.method, "seed": cell.seed, **dict.fromkeys(experiment.cell_keys(cell), 0.5)}
    write_json(sweep.cell_path(cell, out), {"row": row})
    stamp = sweep.cell_path(cell, out).stat().st_mtime_ns
    assert sweep.finish_cell((cell, experiment, out, "cpu")) == (cell, row, None)
    assert sweep.cell_path(cell, out).stat().st_mtime_ns == stamp and not (out / "runs").exists()


def test_each_cell_asks_ray_for_a_cpu_and_its_share_of_a_gpu():
    assert sweep_ray.task_options("cuda", 0.25) == {"num_cpus": 1, "num_gpus": 0.25, "max_retries": 3}
    assert sweep_ray.task_options("cuda", None)["num_gpus"] == 1.0
    assert sweep_ray.task_options("cpu", None)["num_gpus"] == 0.0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--backend", "ray"], "--backend ray needs Ray, an optional extra: pip install -e '.[ray]'"),
        (["--gpus-per-cell", "0.5"], "--address and --gpus-per-cell are for --backend ray"),
        (["--address", "auto"], "--address and --gpus-per-cell are for --backend ray"),
        (["--backend", "ray", "--gpus-per-cell", "0.5"], "--gpus-per-cell needs --device cuda or auto"),
        (["--backend", "ray", "--device", "cuda", "--gpus-per-cell", "2"], "must be in (0, 1]"),
        (["--backend", "ray", "--device", "cuda:1"], "valid devices: cpu, cuda, auto"),
        (["--backend", "ray", "--address", "auto", "--workers", "4"], "with --address the cluster's own"),
    ],
)
def test_ray_flags_and_a_missing_ray_give_one_clear_error(tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: `import ray` fails
    spec = tmp_path / "ok.toml"
    spec.write_text("seeds = [0]\nscripted = ['expert']")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("caring: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
