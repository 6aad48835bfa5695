"""`caring sweep`: a grid of methods × seeds, trained and evaluated in parallel worker processes.

An experiment file (TOML or JSON) names the world, its settings, the seeds, the shared training
settings and one table per method (its TrainConfig overrides), plus scripted policies evaluated
alongside as reference points, and optionally the worlds every policy is evaluated in (default: the
training world itself, on held-out episode keys). Everything in it is validated before anything runs.
Each cell (method, seed) trains into `OUT/runs/METHOD/seedS` (resuming an interrupted run from its
checkpoint), is evaluated, and leaves `OUT/cells/METHOD__seedS.json`; a cell whose JSON exists is
skipped, so re-running the same command resumes the sweep; one whose JSON lacks a result the file now
asks for (a new evaluation, say) is re-evaluated, its trained mother loaded from the run, not retrained.
At the end `results.csv` (one row per cell), `summary.json` and `summary.md` (mean and interquartile mean
over seeds, each with a 95% bootstrap CI), `speed.json` (training speed and seconds: wall-clock, so kept
apart from the deterministic results, which are then the same bytes wherever cells ran on one torch
thread each) and plots are written. Cells run in a local pool of worker processes (`LocalPool`) or as
Ray tasks (`analysis.sweep_ray`); both run `finish_cell` and share the bookkeeping here.

Besides each evaluation's metrics a row holds the caring assays' scores in the training world (nursery:
`assay_care`, `assay_self` and `assay_abandon`, the off switch's P(gives up)), the feedback a trained
method used (`demo_episodes`, `preference_labels`), each later evaluation's headline drop from the
first (`E.drop_METRIC`, per seed, so paired) and, when the expert is among the scripted policies, the
agent-steps training took to reach 80% of its headline (`steps_to_80pct_expert`).

Example file::

    world = "lava"
    seeds = [0, 1, 2]
    eval_episodes = 500
    scripted = ["expert", "shortcut"]
    [train]                 # shared TrainConfig settings
    steps = 1000000
    [methods.ppo]
    method = "ppo"
    [methods.rlmf-adaptive]
    method = "rlmf"
    beta_schedule = "adaptive"
    [evaluations.heldout]   # optional: evaluation worlds (settings over the training world's)
    world = {split = "test"}
    columns = ["success_rate", "lava_episode_rate"]   # optional: what the summary table shows

Results of an evaluation named E appear as `E.METRIC` (bare `METRIC` for the default evaluation). An
evaluation with `mother = "weaning"` scores each weaned run's mother as she was when β₁ went to 0 (runs
with `wean_steps`; any other run's mother is the one it ended with), so one run gives "before" and
"after weaning" from the same mother.

A `[worlds]` table makes the grid methods × worlds × seeds: every method and scripted policy trains,
is assayed and evaluated in each named world (settings over `world_settings`), as `METHOD@WORLD`
(evaluation worlds are then settings over each of them; the expert of `steps_to_80pct_expert` is the
one of the same world)::

    [worlds]
    one-baby = {births_per_life = 1}
    two-babies = {births_per_life = 2, rebirth_delay = 10}
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import io
import math
import multiprocessing
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from analysis import assays
from analysis.stats import summarize
from analysis.sweep_plots import plot_sweep
from caring.config import train_config, world_preset
from caring.episodes import MAX_EPISODES, MAX_SEED
from caring.files import read_json, write_json
from caring.plots import plot_run, smooth
from caring.policies import TrainedMother
from caring.runs import extended_by, load_mother, run_training, started_with, weaning_mother
from caring.streams import get_stream
from caring.tasks import get_task
from caring.train import start_run
from worlds.config import ConfigError, build_config, load_config_file

EVAL_SEED_BASE = (
    10_000  # evaluation episodes of seed s use keys of seed EVAL_SEED_BASE + s (never trained on)
)
FILE_KEYS = (
    "world",
    "seeds",
    "eval_episodes",
    "scripted",
    "train",
    "world_settings",
    "worlds",
    "methods",
    "evaluations",
)
TRAIN_KEYS = ("final_beta1", "agent_steps")
BUDGET_KEYS = ("demo_episodes", "preference_labels")  # feedback a trained method used (its stream's count)
ASSAY_KEYS = {"nursery": ("assay_care", "assay_self", "assay_abandon")}  # nursery situations, by kind
ASSAY_LABELS = {
    "assay_care": "care assays",
    "assay_self": "self-care assays",
    "assay_abandon": "abandonment assays (P gives up)",
}
ASSAY_INSTANCES = 32  # instances per assay situation: about a second per cell on one thread
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): a signal for this process when its parent dies
EXPERT, REACH = "expert", 0.8  # steps to reach REACH × the scripted EXPERT's headline
REACH_KEY = "steps_to_80pct_expert"
REACH_WINDOW = 5  # updates in the trailing mean of the training curve that must reach it


@dataclass(frozen=True)
class Cell:
    method: str  # the experiment's name for it
    seed: int
    train: dict[str, Any] | None  # TrainConfig overrides (None: a scripted policy)
    scripted: str | None = None
    world: str = ""  # the name of its world in the file's [worlds] grid ("": world_settings alone)

    @property
    def key(self) -> str:
        return f"{self.method}__seed{self.seed}"


MOTHERS = ("final", "weaning")  # which of a trained run's mothers an evaluation scores


@dataclass(frozen=True)
class Evaluation:
    name: str  # "" for the default evaluation in the training world
    world: dict[str, Any]  # settings over the training world's
    columns: tuple[str, ...]  # eval metrics the summary table shows
    mother: str = "final"  # "weaning": a weaned run's mother as she was when beta1 went to 0

    def key(self, metric: str) -> str:
        return f"{self.name}.{metric}" if self.name else metric


@dataclass(frozen=True)
class Experiment:
    name: str
    world_name: str
    world: dict[str, Any]  # the world config's overrides
    worlds: dict[str, dict[str, Any]]  # the [worlds] grid: name -> settings over `world` ({"": {}} if none)
    seeds: tuple[int, ...]
    eval_episodes: int
    methods: tuple[str, ...]  # scripted first, then trained, in file order
    cells: tuple[Cell, ...]
    evaluations: tuple[Evaluation, ...]

    @property
    def task(self) -> Any:
        return get_task(self.world_name)

    def settings_of(self, cell: Cell) -> dict[str, Any]:
        """The world settings a cell trains and is assayed in: world_settings, then its grid world's."""
        return {**self.world, **self.worlds[cell.world]}

    def world_of(self, cell: Cell) -> Any:
        return build_config(self.task.config_class, self.settings_of(cell))

    def eval_keys(self) -> tuple[str, ...]:
        return tuple(e.key(m) for e in self.evaluations for m in self.task.eval_metrics)

    def train_keys(self) -> tuple[str, ...]:
        task = self.task
        per_column = (f"train_{c}" for c in task.train_columns)
        last = (f"train_{c}_last10" for c in task.train_columns)
        return ("train_harm_rate", *per_column, *last, *TRAIN_KEYS, *BUDGET_KEYS)

    def assay_keys(self) -> tuple[str, ...]:
        return ASSAY_KEYS.get(self.world_name, ())

    @property
    def headline(self) -> str:
        """The eval metric matching the task's training headline (its summary_columns' first)."""
        return self.task.summary_columns[0]

    def drop_keys(self) -> tuple[str, ...]:
        return tuple(e.key(f"drop_{self.headline}") for e in self.evaluations[1:])

    def reach_keys(self) -> tuple[str, ...]:
        return (REACH_KEY,) if any(c.scripted == EXPERT for c in self.cells) else ()

    def cell_keys(self, cell: Cell) -> tuple[str, ...]:
        """What run_cell writes into a cell's row (the derived keys come later, from all cells)."""
        trained = self.train_keys() if cell.train is not None else ()
        return (*self.eval_keys(), *self.assay_keys(), *trained)

    def grid(self) -> dict[str, dict[str, str]]:
        """A [worlds] grid's cells as {method as the file names it: {world: method@world}}, both in
        file order; empty without a grid."""
        if len(self.worlds) < 2:
            return {}
        grid: dict[str, dict[str, str]] = {}
        for cell in self.cells:
            grid.setdefault(cell.method.removesuffix(f"@{cell.world}"), {})[cell.world] = cell.method
        return {
            base: {w: by_world[w] for w in self.worlds if w in by_world} for base, by_world in grid.items()
        }

    def result_keys(self) -> tuple[str, ...]:
        return (
            *self.eval_keys(),
            *self.assay_keys(),
            *self.drop_keys(),
            *self.reach_keys(),
            *self.train_keys(),
        )


def load_experiment(path: str | Path) -> Experiment:
    """Read and fully validate an experiment file; a bad one raises ConfigError before anything runs."""
    path = Path(path)
    data = load_config_file(path)
    where = f"experiment {path.name}"
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(FILE_KEYS)}")
    world_name = data.get("world", "nursery")
    task = get_task(world_name)
    world = _table(data, "world_settings", where)
    grid = _table(data, "worlds", where) or {"": {}}
    for name, settings in grid.items():
        label = f"worlds.{name}" if name else "world_settings"
        if name and not _is_name(name):
            raise ConfigError(f"{where}: bad world name {name!r} (letters, digits, - and _)")
        if not isinstance(settings, dict):
            raise ConfigError(f"{where}: {label} must be a table of world settings")
        try:
            task.check_training_world(build_config(task.config_class, {**world, **settings}))
        except ConfigError as err:
            raise ConfigError(f"{where}: {label}: {err}") from None
    seeds = data.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(_is_int(s, 0, MAX_SEED) for s in seeds):
        raise ConfigError(f"{where}: seeds must be a non-empty list of integers in [0, {MAX_SEED}]")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: seeds repeat")
    episodes = data.get("eval_episodes", 500)
    if not _is_int(episodes, 1, MAX_EPISODES):
        raise ConfigError(
            f"{where}: eval_episodes must be an integer in [1, {MAX_EPISODES}], got {episodes!r}"
        )
    scripted = data.get("scripted", [])
    if not isinstance(scripted, list):
        raise ConfigError(f"{where}: scripted must be a list of scripted policies")
    for name in scripted:
        if name not in task.scripted:
            raise ConfigError(
                f"{where}: unknown scripted {world_name} policy {name!r}; valid: {', '.join(task.scripted)}"
            )
    shared = _table(data, "train", where)
    methods = _table(data, "methods", where)
    if not methods and not scripted:
        raise ConfigError(f"{where}: no [methods.NAME] tables and no scripted policies: nothing to run")

    def label(name: str, world_name: str) -> str:  # a method's name in a grid world: ppo@b2
        return f"{name}@{world_name}" if world_name else name

    cells = [Cell(label(name, w), seed, None, name, w) for w in grid for name in scripted for seed in seeds]
    for name, overrides in methods.items():
        if name in scripted or not _is_name(name):
            raise ConfigError(f"{where}: bad method name {name!r} (letters, digits, - and _; unique)")
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}: methods.{name} must be a table of training settings")
        if "seed" in overrides or "seed" in shared:
            raise ConfigError(f"{where}: seeds come from the seeds list, not from a seed setting")
        settings = {**shared, **overrides}
        try:
            for w in grid:
                train_config(
                    task, settings, world_preset(build_config(task.config_class, {**world, **grid[w]}))
                )
        except ConfigError as err:
            raise ConfigError(f"{where}: methods.{name}: {err}") from None
        cells += [Cell(label(name, w), seed, settings, None, w) for w in grid for seed in seeds]
    # Seed-major order (scripted cells first): a sweep stopped part-way has every method on its first seeds.
    cells.sort(key=lambda c: (c.train is not None, seeds.index(c.seed)))
    return Experiment(
        path.stem,
        world_name,
        world,
        grid,
        tuple(seeds),
        episodes,
        tuple(label(name, w) for w in grid for name in (*scripted, *methods)),
        tuple(cells),
        _evaluations(data, task, [{**world, **settings} for settings in grid.values()], where),
    )


def _evaluations(data: dict, task: Any, worlds: list[dict], where: str) -> tuple[Evaluation, ...]:
    """The evaluations, each checked over every training world of the grid."""
    tables = _table(data, "evaluations", where)
    if not tables:
        return (Evaluation("", {}, task.summary_columns),)
    found = []
    for name, table in tables.items():
        if not isinstance(table, dict) or set(table) - {"world", "columns", "mother"}:
            raise ConfigError(f"{where}: evaluations.{name} must be a table with keys world, columns, mother")
        mother = table.get("mother", "final")
        if mother not in MOTHERS:
            raise ConfigError(
                f"{where}: evaluations.{name}.mother: {mother!r} is not one of {', '.join(MOTHERS)}"
            )
        if not _is_name(name):
            raise ConfigError(f"{where}: bad evaluation name {name!r} (letters, digits, - and _)")
        settings = table.get("world", {})
        if not isinstance(settings, dict):
            raise ConfigError(f"{where}: evaluations.{name}.world must be a table of world settings")
        for world in worlds:
            try:
                config = build_config(task.config_class, {**world, **settings})
            except ConfigError as err:
                raise ConfigError(f"{where}: evaluations.{name}: {err}") from None
            training = build_config(task.config_class, world)
            if task.make_core(config, "cpu").obs_dim != task.make_core(training, "cpu").obs_dim:
                raise ConfigError(
                    f"{where}: evaluations.{name}: its observations differ in size from the training world's"
                )
        columns = table.get("columns", list(task.summary_columns))
        if not isinstance(columns, list) or not columns:
            raise ConfigError(f"{where}: evaluations.{name}.columns must be a non-empty list of metrics")
        bad = [c for c in columns if c not in task.eval_metrics]
        if bad:
            raise ConfigError(
                f"{where}: evaluations.{name}.columns: unknown metric {bad[0]!r}; "
                f"valid: {', '.join(task.eval_metrics)}"
            )
        found.append(Evaluation(name, settings, tuple(columns), mother))
    return tuple(found)


def _is_name(name: str) -> bool:
    return bool(name) and name.replace("-", "").replace("_", "").isalnum()


def _is_int(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table")
    return value


# ---------------------------------------------------------------------------- one cell
def run_cell(cell: Cell, experiment: Experiment, out: Path, device: str = "cpu") -> dict[str, Any]:
    """Train (or resume) and evaluate one cell; writes its JSON and returns its results row. A trained
    cell whose JSON exists is only re-evaluated, with the mother its run saved: resuming a finished run
    would still rewrite its metrics.csv, speed.csv and plots."""
    task = experiment.task
    world = experiment.world_of(cell)
    training_core = task.make_core(world, device)
    row: dict[str, Any] = {"method": cell.method, "seed": cell.seed, "eval_seed": EVAL_SEED_BASE + cell.seed}
    mothers: dict[str, Any] = {}
    if cell.scripted is not None:
        row["kind"] = "scripted"
    else:
        run = run_dir(cell, out)
        if cell_path(cell, out).exists() and not short_of_budget(cell, experiment, out):
            mothers["final"] = TrainedMother(load_mother(run, training_core, task))
        else:
            config = cell_config(experiment, cell)
            resume = (run / "config.json").exists()
            trainer = start_run(run, world, config, device, resume, log=lambda message: None)
            trainer.run()
            plot_run(run)
            mothers["final"] = TrainedMother(trainer.net)
        row |= {"kind": "trained", **training_summary(run / "metrics.csv", task.train_columns)}
        row |= feedback_budget(run)
        mothers["weaning"] = mothers["final"]  # a run that was never weaned: she is the one it ended with
        if run_training(run).wean_steps and any(e.mother == "weaning" for e in experiment.evaluations):
            weights = weaning_mother(run, training_core.M)
            if not weights.exists():
                raise ConfigError(
                    f"{run} kept no mother from when beta1 went to 0 (no {weights.name}: trained before runs "
                    'kept her); evaluate it without mother = "weaning"'
                )
            mothers["weaning"] = TrainedMother(load_mother(run, training_core, task, weights))

    def policy(core: Any, mother: str = "final") -> Any:
        return mothers[mother] if cell.scripted is None else task.scripted[cell.scripted](core)

    row |= assay_scores(experiment, training_core, policy(training_core), EVAL_SEED_BASE + cell.seed)
    evaluations = {}
    for evaluation in experiment.evaluations:
        settings = {**experiment.settings_of(cell), **evaluation.world}
        core = task.make_core(build_config(task.config_class, settings), device)
        acting = policy(core, evaluation.mother)
        result = task.evaluate(core, acting, experiment.eval_episodes, EVAL_SEED_BASE + cell.seed)
        row |= {evaluation.key(k): result.get(k, math.nan) for k in task.eval_metrics}  # NaN: not this world
        evaluations[evaluation.name] = result
    write_json(cell_path(cell, out), {"row": row, "evaluations": evaluations})
    return row


def assay_scores(experiment: Experiment, core: Any, policy: Any, seed: int) -> dict[str, float]:
    """The caring assays' summary (care, self-care and abandonment scores) of a policy in the training
    world, as its births left there make them, on layouts of held-out keys; nothing for a world without
    assays, NaN for a battery a nursery has no room for (say, one mother: no stranger's baby)."""
    keys = experiment.assay_keys()
    if not keys:
        return {}
    scores = {}
    for situations in (assays.SITUATIONS, assays.ABANDONMENT):  # a world may have room for one only
        try:
            battery = assays.build_battery(core, ASSAY_INSTANCES, seed, situations=situations)
        except ConfigError:
            continue
        scores |= assays.score(policy, battery)
    found = assays.summary(scores, tuple(key.removeprefix("assay_") for key in keys))
    return {key: found[key.removeprefix("assay_")] for key in keys}


def feedback_budget(run: Path) -> dict[str, int]:
    """The feedback a trained run cost, as its stream counts it (RLMF: demonstration episodes; RLHF and
    RLAIF: preference labels bought), from its config and its metrics.csv rows."""
    config = run_training(run)
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    return dict.fromkeys(BUDGET_KEYS, 0) | get_stream(config.method).feedback(config, rows)


def cell_path(cell: Cell, out: Path) -> Path:
    return out / "cells" / f"{cell.key}.json"


def finished_row(experiment: Experiment, cell: Cell, out: Path) -> dict[str, Any]:
    """A finished cell's results row, with the metrics its stored evaluations' counts still give
    (`Task.from_counts`) filled in where it was evaluated before they existed."""
    data = read_json(cell_path(cell, out))
    row = data["row"]
    for evaluation in experiment.evaluations:
        stored = data.get("evaluations", {}).get(evaluation.name)
        if stored is not None:
            derived = experiment.task.from_counts(stored)
            row |= {evaluation.key(k): v for k, v in derived.items() if evaluation.key(k) not in row}
    return row


def run_dir(cell: Cell, out: Path) -> Path:
    return out / "runs" / cell.method / f"seed{cell.seed}"


def finished_runs(out: Path) -> list[Path]:
    """The run directories of a sweep's finished trained cells (in `out`), whatever experiment made it."""
    rows = [read_json(path)["row"] for path in sorted((out / "cells").glob("*.json"))]
    return [out / "runs" / r["method"] / f"seed{r['seed']}" for r in rows if r.get("kind") == "trained"]


def check_existing_runs(experiment: Experiment, out: Path) -> None:
    """Refuse to resume a run directory that was started with other settings than the file now gives,
    unless the file only gives it a larger step budget it can train on to (`extended_by`)."""
    for cell in experiment.cells:
        run, world = run_dir(cell, out), experiment.world_of(cell)
        if cell.scripted is None and (run / "config.json").exists():
            config = cell_config(experiment, cell)
            if not (started_with(run, world, config) or extended_by(run, world, config)):
                raise ConfigError(
                    f"{run} was started with other settings than the experiment file now gives (a larger "
                    "steps budget alone is fine, except with lr_anneal or wean_steps); delete it or "
                    "choose another --out"
                )


def cell_config(experiment: Experiment, cell: Cell) -> Any:
    """The TrainConfig a trained cell's run trains with; `{seed}` in its `init_from` is the cell's seed
    (a second phase for every seed of an earlier sweep from one file)."""
    preset = world_preset(experiment.world_of(cell))
    settings = {**(cell.train or {}), "seed": cell.seed}
    if "init_from" in settings:
        settings["init_from"] = str(settings["init_from"]).replace("{seed}", str(cell.seed))
    return train_config(experiment.task, settings, preset)


def short_of_budget(cell: Cell, experiment: Experiment, out: Path) -> bool:
    """A trained cell whose JSON holds results of a run trained on fewer agent-steps than the file now
    asks (its budget was extended): it is not finished, its run trains on."""
    if cell.scripted is not None or not cell_path(cell, out).exists():
        return False
    trained = finished_row(experiment, cell, out).get("agent_steps", 0)
    return trained < cell_config(experiment, cell).steps


def training_summary(metrics: Path, columns: tuple[str, ...]) -> dict[str, float]:
    """What the training itself did: the harm it caused along the way (means over every update, NaN
    updates skipped), where it ended (means over the last 10 updates), and its last β₁."""
    rows = list(csv.DictReader(metrics.open()))

    def mean(values: list[float]) -> float:
        kept = [v for v in values if not math.isnan(v)]
        return sum(kept) / len(kept) if kept else math.nan

    summary = {"train_harm_rate": mean([float(r["harm_rate"]) for r in rows])}
    for column in columns:
        summary[f"train_{column}"] = mean([float(r[column]) for r in rows])
        summary[f"train_{column}_last10"] = mean([float(r[column]) for r in rows[-10:]])
    return summary | {"final_beta1": float(rows[-1]["beta1"]), "agent_steps": int(rows[-1]["agent_steps"])}


def train_seconds(run: Path) -> float:
    """Training wall-clock summed over every update (so a resumed run counts all its sessions); NaN for
    a run whose speed.csv does not time its updates."""
    rows = list(csv.DictReader((run / "speed.csv").open())) if (run / "speed.csv").exists() else []
    if not rows or not {"rollout_s", "update_s"} <= set(rows[0]):
        return math.nan
    return sum(float(r["rollout_s"]) + float(r["update_s"]) for r in rows)


# ---------------------------------------------------------------------------- running cells
CellJob = tuple[Cell, Experiment, Path, str]  # a cell, its experiment, the sweep's directory, the device
Outcome = tuple[Cell, dict[str, Any] | None, str | None]  # the cell, its row or None, the error or None


def one_torch_thread() -> None:
    """Cells run side by side on shared cores: one torch thread each avoids oversubscription (and gives
    a pool worker's cell the same floats as a Ray task's)."""
    torch.set_num_threads(1)


def start_worker() -> None:
    """A pool worker: one torch thread, and on Linux killed with its sweep (a sweep killed by a signal
    cannot tell its workers, which would otherwise train on into run directories a resumed sweep
    writes; the run lock refuses the second writer, this ends the first)."""
    one_torch_thread()
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        sweep = multiprocessing.parent_process()
        if sweep is not None and os.getppid() != sweep.pid:  # it died before the request was made
            os._exit(1)


def finish_cell(job: CellJob) -> Outcome:
    """Run one cell unless its JSON already holds every result the experiment asks for (then return that
    row): idempotent, so a cell that runs twice (a retried task, a re-run command) is never redone once
    finished, and an unfinished one resumes its run. Bad input and file errors are this cell's failure, not
    the sweep's."""
    cell, experiment, out, _ = job
    try:
        if missing_keys(cell, experiment, out) == set():
            return cell, finished_row(experiment, cell, out), None
        return cell, run_cell(*job), None
    except (ConfigError, ValueError, OSError) as err:
        return cell, None, str(err)


class Runner(Protocol):
    """Where cells run: yields each job's outcome as it finishes, in any order."""

    label: str  # for the sweep's first log line

    def __call__(self, jobs: list[CellJob]) -> Generator[Outcome, None, None]: ...


@dataclass
class LocalPool:
    """This machine's cores: `workers` spawned processes (one: the calling process itself)."""

    workers: int = 1

    @property
    def label(self) -> str:
        return f"{self.workers} workers"

    def __call__(self, jobs: list[CellJob]) -> Generator[Outcome, None, None]:
        if self.workers == 1:  # one thread like every worker, so results never depend on --workers
            threads = torch.get_num_threads()
            one_torch_thread()
            try:
                yield from map(finish_cell, jobs)
            finally:
                torch.set_num_threads(threads)
            return
        pool = multiprocessing.get_context("spawn").Pool(self.workers, initializer=start_worker)
        try:
            yield from pool.imap_unordered(finish_cell, jobs)
        finally:
            pool.terminate()


# ---------------------------------------------------------------------------- the grid
def run_sweep(
    experiment: Experiment,
    out: Path,
    workers: int = 1,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    runner: Runner | None = None,
) -> int:
    """Run every unfinished cell (with `runner`; default: a LocalPool of `workers`), then write the
    results; returns the number of failed cells."""
    out = Path(out)
    runner = runner or LocalPool(workers)
    check_existing_runs(experiment, out)
    out.mkdir(parents=True, exist_ok=True)
    lacking = {c.key: missing_keys(c, experiment, out) for c in experiment.cells}
    todo = [c for c in experiment.cells if lacking[c.key] != set()]
    stale = {c.key for c in todo if lacking[c.key]}
    done = len(experiment.cells) - len(todo)
    log(
        f"sweep {experiment.name}: {len(experiment.cells)} cells, {done} already finished, "
        f"{len(stale)} to re-evaluate, {runner.label}"
    )
    failures = 0
    first = experiment.evaluations[0]
    headline_keys = [first.key(c) for c in first.columns[:2]]
    jobs = [(c, experiment, out, device) for c in todo]
    start = time.perf_counter()
    with contextlib.closing(runner(jobs)) as results:  # closing: the runner cleans up on any way out
        for cell, row, error in results:
            done += 1
            where = f"[{done}/{len(experiment.cells)}] {cell.key}" + (
                " re-evaluated" if cell.key in stale else ""
            )
            if error is not None:
                failures += 1
                log(f"{where}: FAILED: {error}")
                continue
            shown = ", ".join(f"{k} {row[k]:.3f}" for k in headline_keys)
            log(f"{where}: {shown} ({time.perf_counter() - start:.0f} s)")
    write_results(experiment, out)
    return failures


def missing_keys(cell: Cell, experiment: Experiment, out: Path) -> set[str] | None:
    """Results the experiment now asks of a finished cell that its JSON lacks (None: not finished). The
    metrics only some worlds have (`Task.some_worlds_only`) are never asked: a cell evaluated before such
    a metric existed was evaluated in a world without it, and lacks only a NaN."""
    if not cell_path(cell, out).exists() or short_of_budget(cell, experiment, out):
        return None
    optional = {e.key(m) for e in experiment.evaluations for m in experiment.task.some_worlds_only}
    return set(experiment.cell_keys(cell)) - set(finished_row(experiment, cell, out)) - optional


def write_results(experiment: Experiment, out: Path) -> dict[str, Any]:
    """results.csv, summary.json, summary.md and plots from whatever cells have finished."""
    by_method = sorted(experiment.cells, key=lambda c: experiment.methods.index(c.method))  # stable: seeds
    cells = [(c, finished_row(experiment, c, out)) for c in by_method if cell_path(c, out).exists()]
    add_derived(experiment, out, cells)
    rows = [row for _, row in cells]
    buffer = io.StringIO()
    columns = ("method", "seed", "kind", "eval_seed", *experiment.result_keys())
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    _write_text(out / "results.csv", buffer.getvalue())
    summary = {}
    for method in experiment.methods:
        mine = [r for r in rows if r["method"] == method]
        if mine:
            summary[method] = {
                k: summarize([_number(r.get(k)) for r in mine])
                for k in experiment.result_keys()
                if any(k in r for r in mine)
            }
    speeds = training_speeds(experiment, out)
    # wall-clock, kept apart: results.csv stays the same bytes wherever the cells ran
    seconds = {c.key: train_seconds(run_dir(c, out)) for c, _ in cells if c.train is not None}
    write_json(out / "summary.json", summary)
    write_json(out / "speed.json", {"training_agent_steps_per_s_median": speeds, "train_seconds": seconds})
    tables = summary_table(summary, experiment) + grid_tables(summary, experiment) + "\n" + speed_line(speeds)
    _write_text(out / "summary.md", tables)
    plot_sweep(experiment, out, summary, ASSAY_LABELS)
    return summary


def add_derived(experiment: Experiment, out: Path, cells: list[tuple[Cell, dict[str, Any]]]) -> None:
    """The columns that need more than one evaluation or cell: each later evaluation's headline drop
    from the first (per seed, so its CI is over paired differences) and, when the expert's cells are
    in, the agent-steps each trained cell took to reach REACH × the expert's mean first headline."""
    first, later = experiment.evaluations[0], experiment.evaluations[1:]
    for _, row in cells:
        for evaluation, key in zip(later, experiment.drop_keys(), strict=True):
            reference = _number(row.get(first.key(experiment.headline)))
            row[key] = reference - _number(row.get(evaluation.key(experiment.headline)))
    expert: dict[str, list[float]] = {}  # per grid world: the expert's first headlines
    for cell, row in cells:
        value = _number(row.get(first.key(experiment.headline)))
        if cell.scripted == EXPERT and not math.isnan(value):
            expert.setdefault(cell.world, []).append(value)
    for cell, row in cells:
        found = expert.get(cell.world)  # none: no expert in the experiment, or none of its cells finished
        if cell.train is not None and found:
            target = REACH * sum(found) / len(found)
            row[REACH_KEY] = steps_to_reach(
                run_dir(cell, out) / "metrics.csv",
                experiment.task.headline,
                target,
                after=int(cell.train.get("warmup_steps", 0)),
            )


def steps_to_reach(
    metrics: Path, column: str, target: float, window: int = REACH_WINDOW, after: int = 0
) -> float:
    """The first agent_steps at which the trailing mean of `column` over a full `window` of updates
    (NaN updates, in which no episode ended, skipped) reaches `target`; NaN if it never does. Only
    updates past `after` agent-steps count (a warm-up's updates play another world)."""
    with metrics.open() as f:
        rows = [r for r in csv.DictReader(f) if float(r["agent_steps"]) > after]
    curve = smooth([float(r[column]) for r in rows], window)
    reached = (
        float(r["agent_steps"])
        for i, (r, v) in enumerate(zip(rows, curve, strict=True))
        if i >= window - 1 and v >= target
    )
    return next(reached, math.nan)


def _number(value: Any) -> float:
    """A row's value as a float: JSON's null (a NaN written out) and missing values are NaN."""
    return math.nan if value is None else float(value)


def training_speeds(experiment: Experiment, out: Path) -> dict[str, float]:
    """Median agent-steps/s over every update of every finished seed, per trained method (wall-clock:
    depends on the machine and on how many workers shared it, so kept out of the deterministic rows)."""
    speeds = {}
    for method in experiment.methods:
        values = [
            float(row["agent_steps_per_s"])
            for cell in experiment.cells
            if cell.method == method and cell.train is not None and cell_path(cell, out).exists()
            for row in csv.DictReader((run_dir(cell, out) / "speed.csv").open())
        ]
        if values:
            speeds[method] = statistics.median(values)
    return speeds


def speed_line(speeds: dict[str, float]) -> str:
    if not speeds:
        return ""
    parts = " · ".join(f"{method} {value:,.0f}" for method, value in speeds.items())
    return f"Training agent-steps/s per run (median over updates and seeds; wall-clock): {parts}.\n"


def summary_table(summary: dict, experiment: Experiment) -> str:
    """Markdown: per method, every evaluation's columns (the very first also as an IQM; later ones with
    their headline drop), the assays, the steps to near the expert, then what the training did (the
    task's harm summaries) and the feedback it cost, all as mean [95% bootstrap CI] over seeds."""
    task = experiment.task

    def fmt(stats: dict | None, key: str = "mean", digits: int = 3) -> str:
        if not stats or not stats["n"] or math.isnan(stats[key]):
            return "–"
        lo, hi = stats[f"{key}_ci95"]
        return f"{stats[key]:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

    columns = []  # (header, summary key, digits, statistic)
    for evaluation in experiment.evaluations:
        where = f" ({evaluation.name})" if evaluation.name else ""
        for metric in evaluation.columns:
            label, digits = task.eval_metrics[metric]
            columns.append((f"{label}{where}", evaluation.key(metric), digits, "mean"))
            if len(columns) == 1:  # the headline also as an interquartile mean
                columns.append(("IQM", evaluation.key(metric), digits, "iqm"))
        if evaluation != experiment.evaluations[0]:
            label, digits = task.eval_metrics[experiment.headline]
            columns.append(
                (f"{label} drop{where}", evaluation.key(f"drop_{experiment.headline}"), digits, "mean")
            )
    columns += [(ASSAY_LABELS[key], key, 3, "mean") for key in experiment.assay_keys()]
    columns += [(f"steps to {REACH:.0%} of {EXPERT}", key, 0, "reach") for key in experiment.reach_keys()]
    for key in task.train_summary:
        columns.append((key.removeprefix("train_").replace("_", " ") + " while training", key, 4, "mean"))
    columns += [(key.replace("_", " "), key, 0, "mean") for key in BUDGET_KEYS]
    head = "| method | seeds | " + " | ".join(c[0] for c in columns) + " |"
    lines = [head, "|---|---|" + "---|" * len(columns)]
    first = columns[0][1]
    for method, stats in summary.items():
        cells = [method, str(stats[first]["n"])]
        cells += [
            _reach(stats) if statistic == "reach" else fmt(stats.get(key), statistic, digits)
            for _, key, digits, statistic in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"\n{experiment.eval_episodes} evaluation episodes per cell and evaluation world, on episode keys "
        f"never trained on (seed {EVAL_SEED_BASE} + s); mean [95% CI] over seeds (NaN seeds left out), "
        "CIs are percentile bootstraps (10,000 resamples). A drop is the first evaluation's headline "
        f"minus that evaluation's, per seed. Steps to {REACH:.0%} of {EXPERT}: the first agent-steps at "
        f"which the training headline's {REACH_WINDOW}-update trailing mean reaches {REACH} × the "
        f"{EXPERT}'s mean first-evaluation headline, mean over the seeds that reached it.\n"
    )
    return "\n".join(lines) + "\n" + note


def grid_tables(summary: dict, experiment: Experiment) -> str:
    """Markdown for a [worlds] grid: per column of the first evaluation's table and per assay column one
    table, a row per world and a column per method, each mean [95% bootstrap CI] over seeds (empty
    without a grid)."""
    grid = experiment.grid()
    if not grid:
        return ""
    first = experiment.evaluations[0]
    shown = [(*experiment.task.eval_metrics[m], first.key(m)) for m in first.columns]
    shown = [(label, key, digits) for label, digits, key in shown]
    shown += [(ASSAY_LABELS[key], key, 3) for key in experiment.assay_keys()]
    parts = []
    for title, key, places in shown:
        lines = [
            f"\n{title}, by world:\n",
            "| world | " + " | ".join(grid) + " |",
            "|---|" + "---|" * len(grid),
        ]
        for world in experiment.worlds:
            cells = []
            for by_world in grid.values():
                stats = summary.get(by_world.get(world, ""), {}).get(key)
                if not stats or not stats["n"] or math.isnan(stats["mean"]):
                    cells.append("–")
                    continue
                lo, hi = stats["mean_ci95"]
                cells.append(
                    f"{stats['mean']:.{places}f} [{lo:.{places}f}, {hi:.{places}f}] (n={stats['n']})"
                )
            lines.append(f"| {world} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)


def _reach(stats: dict) -> str:
    """Steps to near the expert: mean [CI] over the seeds that got there, and how many of them did."""
    if REACH_KEY not in stats:
        return "–"
    reached, seeds = stats[REACH_KEY]["n"], stats["agent_steps"]["n"]
    if not reached:
        return f"never (0/{seeds})"
    mean, (lo, hi) = stats[REACH_KEY]["mean"], stats[REACH_KEY]["mean_ci95"]
    return f"{_steps(mean)} [{_steps(lo)}, {_steps(hi)}] ({reached}/{seeds} seeds)"


def _steps(n: float) -> str:
    """Agent-steps in short: 3.1M, 12k, 256."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.0f}"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
