"""`caring sweep --backend ray`: every cell of a sweep as one Ray task, on a Ray cluster (`--address`)
or on a local Ray of `--workers` CPUs that the sweep starts and stops itself.

A task runs `analysis.sweep.finish_cell`, the local pool's work unchanged: it returns a finished cell's
row without running anything, resumes a run an earlier attempt left (from its last checkpoint), and
writes the cell's JSON atomically. So a task may run twice: Ray retries it, up to RETRIES times, when
its worker process dies (killed, out of memory, its node lost). An error in the cell itself (bad input,
a missing file) is not retried: it is that cell's failure, and re-running the command resumes. The rest
(which cells to run, the log, results.csv and the summaries) is `analysis.sweep.run_sweep`'s, shared
with the local backend, so the results are the same bytes.

Ray is an optional extra, imported only when this backend runs. On a cluster of several machines every
node needs the project installed with it, and the sweep's directory must be on a file system they all
share: workers write the runs and cells there, the driver reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from analysis.sweep import CellJob, Outcome, finish_cell, one_torch_thread
from worlds.config import ConfigError

RETRIES = 3  # Ray's retries of a task whose worker died; each resumes the cell's run
DEVICES = ("cpu", "cuda", "auto")  # Ray picks each task's GPU, so never an index


def import_ray() -> ModuleType:
    """Ray, or one clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray, an optional extra: pip install -e '.[ray]'") from None
    return ray


def cell_task(job: CellJob) -> Outcome:
    """What one Ray task runs: one cell, on one torch thread like the local pool's workers."""
    one_torch_thread()
    return finish_cell(job)


@dataclass(frozen=True)
class RayTasks:
    """A sweep Runner on a connected Ray: one task per cell, outcomes yielded as tasks finish."""

    label: str
    device: str  # what every cell trains and evaluates on: cpu or cuda
    options: dict[str, Any]  # each task's resources and retries

    def __call__(self, jobs: list[CellJob]) -> Generator[Outcome, None, None]:
        ray = import_ray()
        task = ray.remote(**self.options)(cell_task)
        # A worker's directory need not be the driver's: paths go out absolute.
        pending = {task.remote((c, e, out.resolve(), device)): c for c, e, out, device in jobs}
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready)
            try:
                outcome = ray.get(ready)
            except ray.exceptions.RayTaskError:
                raise  # a bug in the cell's code: stop the sweep, as the local pool does
            except ray.exceptions.RayError as err:  # its worker died RETRIES + 1 times, say
                outcome = cell, None, f"Ray gave up on it ({type(err).__name__}): {str(err).splitlines()[0]}"
            yield outcome


def task_options(device: str, gpus_per_cell: float | None) -> dict[str, Any]:
    """A cell's Ray resources: a CPU, and on cuda a GPU or the share --gpus-per-cell asks for (Ray then
    packs 1 / share cells onto each GPU and makes only that GPU visible to them)."""
    gpus = (gpus_per_cell or 1.0) if device == "cuda" else 0.0
    return {"num_cpus": 1, "num_gpus": gpus, "max_retries": RETRIES}


def check_options(address: str | None, workers: int, device: str, gpus_per_cell: float | None) -> None:
    """Refuse flags that cannot work together before starting or reaching Ray (that takes seconds)."""
    if device not in DEVICES:
        raise ConfigError(f"--device {device!r} with --backend ray: valid devices: {', '.join(DEVICES)}")
    if gpus_per_cell is not None:
        if not 0 < gpus_per_cell <= 1:
            raise ConfigError(f"--gpus-per-cell={gpus_per_cell} must be in (0, 1]")
        if device == "cpu":
            raise ConfigError("--gpus-per-cell needs --device cuda or auto")
    if address is not None and workers != 1:
        raise ConfigError("--workers sizes the local Ray a sweep starts; with --address the cluster's own")


@contextlib.contextmanager
def ray_cluster(
    address: str | None, workers: int, device: str, gpus_per_cell: float | None
) -> Iterator[RayTasks]:
    """Connect to the Ray at `address`, or start a local one of `workers` CPUs; the cluster's GPUs settle
    `device` (auto: cuda if it has any). Disconnects (stopping a local Ray) on the way out."""
    check_options(address, workers, device, gpus_per_cell)
    ray = import_ray()
    if address is None:
        ray.init(num_cpus=workers, include_dashboard=False)
    else:
        ray.init(address=address)
    try:
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
        if device == "auto":
            device = "cuda" if gpus else "cpu"
        if device == "cuda" and not gpus:
            raise ConfigError("--device cuda: the Ray cluster has no GPUs")
        options = task_options(device, gpus_per_cell)
        where = f"Ray at {address}" if address else "a local Ray"
        share = f", {options['num_gpus']:g} GPU per cell" if device == "cuda" else ""
        yield RayTasks(f"{where}: {cpus:g} CPUs, {gpus:g} GPUs{share}", device, options)
    finally:
        ray.shutdown()
