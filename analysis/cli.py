"""The `caring` command, on the top floor: the training layer's commands (`caring.commands`) plus the
analysis commands (sweep, audit, probe, retarget). This is the only module that imports both layers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from analysis.abandon import AbandonSettings, format_abandon, run_abandon
from analysis.circuits import ProbeSettings, finished_report, run_probe
from analysis.develop import DevelopSettings, develop
from analysis.lineage import LineageSettings, format_pooled, pooled_lineage, run_lineage
from analysis.lineage import format_lineage as format_lineage_table
from analysis.maternal_audit import action_preferences, format_audit, load_judge
from analysis.retarget import RetargetSettings, pooled, run_retarget
from analysis.sweep import cell_path, load_experiment, run_sweep, write_results
from analysis.switch import SwitchSettings, format_switch, run_switch
from analysis.transplant import TransplantSettings, run_transplant
from analysis.universality import CompareSettings, compare
from caring.commands import EPISODES, SEED, device, finite_float, run
from caring.files import write_json
from caring.policies import load_policy
from caring.runs import run_config, run_world
from caring.tasks import get_task
from worlds.config import ConfigError, build_config, parse_sets, with_preset


def cmd_sweep(args: argparse.Namespace) -> None:
    experiment = load_experiment(args.experiment)  # rejects a bad file before anything runs
    if args.workers < 1:
        raise ConfigError(f"--workers={args.workers} must be at least 1")
    out = Path(args.out or f"results/sweeps/{experiment.name}")

    def log(message: str) -> None:
        print(message, flush=True)

    plots = "summary_bars.png, headline_by_world.png, learning_curves.png"
    plots += ", across_worlds.png" if experiment.grid() else ""
    if args.summarize:  # a sweep spanning sessions: its tables so far, nothing run
        done = sum(cell_path(c, out).exists() for c in experiment.cells)
        if not done:
            raise ConfigError(f"{out} holds no finished cell of {args.experiment}: nothing to summarize")
        write_results(experiment, out)
        written = f"results.csv, summary.md/.json, {plots}"
        print(f"{done} of {len(experiment.cells)} cells finished; wrote {out}/: {written}")
        print((out / "summary.md").read_text())
        return
    if args.backend == "ray":
        from analysis.sweep_ray import ray_cluster  # Ray is an optional extra: imported only here

        with ray_cluster(args.address, args.workers, args.device, args.gpus_per_cell) as runner:
            failures = run_sweep(experiment, out, device=runner.device, log=log, runner=runner)
    elif args.address is not None or args.gpus_per_cell is not None:
        raise ConfigError("--address and --gpus-per-cell are for --backend ray")
    else:
        failures = run_sweep(experiment, out, args.workers, device(args.device), log=log)
    print(f"wrote {out}/: results.csv, summary.md/.json, speed.json, {plots}")
    print((out / "summary.md").read_text())
    if failures:
        raise ConfigError(f"{failures} cell(s) failed; fix the cause and re-run the same command to resume")


def cmd_audit(args: argparse.Namespace) -> None:
    """Which actions does a run's maternal model pay for, in the states a policy visits?"""
    run = Path(args.run)
    name, world = run_world(run, run_config(run))
    task = get_task(name)
    world = build_config(
        task.config_class, with_preset(task.config_class, dataclasses.asdict(world), parse_sets(args.set))
    )
    core = task.make_core(world, device(args.device))
    judge = load_judge(run, core, task)
    policies = args.policy or ["expert", "random", args.run]
    audits = {
        policy: action_preferences(
            task, core, judge, load_policy(policy, core, task), args.episodes, args.seed
        )
        for policy in policies
    }
    if args.json:
        print(json.dumps({"run": args.run, "episodes": args.episodes, "seed": args.seed, "audits": audits}))
        return
    print("\n\n".join(format_audit(policy, audit) for policy, audit in audits.items()))


QUICK_PROBE = {"episodes": 32, "instances": 8, "sizes": (0, 4, 8), "random_sets": 3}


def settings_from(args: argparse.Namespace, kind: type, quick: dict[str, Any], **given: Any) -> Any:
    """A command's settings dataclass: its --quick preset, then every flag of a field of `kind` that was
    given, then `given` (flags that need converting first); None means "not given"."""
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(kind) if hasattr(args, f.name)}
    values = {k: v for k, v in {**flags, **given}.items() if v is not None}
    return kind(**{**(quick if args.quick else {}), **values})


def cmd_probe(args: argparse.Namespace) -> None:
    """Assays, attribution, probes and the ablation curve of one nursery run, as figures and JSON."""
    sizes = tuple(args.sizes) if args.sizes else None
    settings = settings_from(args, ProbeSettings, QUICK_PROBE, sizes=sizes)
    out = Path(args.out)
    run_probe(args.run, out, settings, device(args.device), lambda m: print(m, flush=True))
    print((out / "report.md").read_text())
    print(
        f"wrote {out}/: report.json, report.md, assays.png, attribution.png, probes.png, ablation_curve.png"
    )


QUICK_DEVELOP = {"episodes": 32, "instances": 8, "probe_episodes": 16}


def cmd_develop(args: argparse.Namespace) -> None:
    """Measure a run's snapshots; print the table and where the figure went."""
    settings = settings_from(args, DevelopSettings, QUICK_DEVELOP)
    out = Path(args.out or Path(args.run) / "develop")
    rows = develop(args.run, out, settings, device(args.device), lambda m: print(m, flush=True))
    shown = ("agent_steps", "baby_survival", "care_kin", "care_other", "self_care", "probe_baby_hunger")
    print(" ".join(f"{k:>17s}" for k in shown))
    for row in rows:
        print(" ".join(f"{row[k]:17.3f}" if isinstance(row[k], float) else f"{row[k]:17,d}" for k in shown))
    print(f"wrote {out}/: develop.png, develop.csv, develop.json")


QUICK_LINEAGE = {"episodes": 32, "instances": 8, "random_sets": 1}


def cmd_lineage(args: argparse.Namespace) -> None:
    """Ablate the caring units in one generation's mothers at a time; print each generation's survival
    (several runs: each into OUT/runI, then the pooled drops over them)."""
    settings = settings_from(args, LineageSettings, QUICK_LINEAGE)
    log = lambda m: print(m, flush=True)  # noqa: E731
    if len(args.run) == 1:
        out = Path(args.out or Path(args.run[0]) / "lineage")
        report = run_lineage(args.run[0], out, settings, device(args.device), log)
        print(format_lineage_table(report), end="")
        print(f"wrote {out}/: report.json, report.md")
        return
    if not args.out:
        raise ConfigError("several runs need --out (one directory for all of them)")
    out, reports = Path(args.out), []
    for i, path in enumerate(args.run):
        report = finished_report(path, out / f"run{i}", settings)
        log(f"run {i + 1}/{len(args.run)}: {path}" + (" (finished earlier: reused)" if report else ""))
        reports.append(report or run_lineage(path, out / f"run{i}", settings, device(args.device), log))
    pooled = pooled_lineage(reports)
    write_json(out / "summary.json", pooled)
    print(format_pooled(pooled), end="")
    print(f"wrote {out}/: run*/report.json, run*/report.md, summary.json")


QUICK_SWITCH = {"episodes": 32, "instances": 8, "random_sets": 2}


def cmd_switch(args: argparse.Namespace) -> None:
    """Probe "another baby is possible" in a mother's network and ablate the units that carry it."""
    settings = settings_from(args, SwitchSettings, QUICK_SWITCH)
    out = Path(args.out or Path(args.run) / "switch")
    report = run_switch(args.run, out, settings, device(args.device), lambda m: print(m, flush=True))
    print(format_switch(report), end="")
    print(f"wrote {out}/: report.json, report.md")


QUICK_ABANDON = {"instances": 8}


def cmd_abandon(args: argparse.Namespace) -> None:
    """P(gives up) early and late in each mother, pooled by group (a sweep's METHOD@WORLD)."""
    settings = settings_from(args, AbandonSettings, QUICK_ABANDON)
    if not args.out and len(args.run) > 1:
        raise ConfigError("several runs need --out (one directory for all of them)")
    out = Path(args.out or Path(args.run[0]) / "abandon")
    report = run_abandon(args.run, out, settings, device(args.device), lambda m: print(m, flush=True))
    print(format_abandon(report), end="")
    print(f"wrote {out}/: report.json, report.md")


QUICK_RETARGET = {
    "episodes": 32,
    "vector_episodes": 8,
    "random_vectors": 1,
    "coefficients": (0.0, 2.0),
    "units": (4, 8),
    "finetune_steps": 16384,
    "finetune_checks": 2,
}
RETARGET_KEYS = (
    "method",
    "new_baby_survival_before",
    "new_baby_survival_after",
    "own_baby_survival_before",
    "own_baby_survival_after",
    "mother_survival_change",
    "mother_survival_vs_own_baby",
    "goal_met_before",
    "goal_met",
)


def cmd_retarget(args: argparse.Namespace) -> None:
    """Make a nursery mother care for foster babies: steering, unit patching or fine-tuning."""
    coefficients = tuple(args.coefficients) if args.coefficients else None
    units = tuple(args.units) if args.units else None
    settings = settings_from(args, RetargetSettings, QUICK_RETARGET, coefficients=coefficients, units=units)
    out = Path(args.out)
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
    if len(args.run) == 1:
        summary = run_retarget(args.run[0], out, settings, device(args.device), log)
        written = "report.json, dose_response.png"
    else:  # several runs (training seeds): one directory each, then the pooled numbers
        reports = []
        for i, run in enumerate(args.run):
            report = finished_report(run, out / f"run{i}", settings)
            log(f"run {i + 1}/{len(args.run)}: {run}" + (" (finished earlier: reused)" if report else ""))
            reports.append(report or run_retarget(run, out / f"run{i}", settings, device(args.device), log))
        summary = pooled(reports)
        write_json(out / "summary.json", summary)
        written = "run*/report.json, run*/dose_response.png, summary.json"
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k not in ("settings", "dose_response")}))
        return
    for key in (*RETARGET_KEYS, "new_baby_survival_control"):
        if key not in summary:
            continue
        value = summary[key]
        print(f"{key:28s} {value:.3f}" if isinstance(value, float) else f"{key:28s} {value}")
    for name, part in summary["goal"].items():  # the goal part by part: which bar fails?
        value = "n/a" if part["value"] is None else f"{part['value']:.3f}"
        verdict = {True: "met", False: "NOT met", None: "does not apply"}[part["met"]]
        print(f"  goal: {name:26s} {value:>7s}  ({part['bar']})  {verdict}")
    print(f"wrote {out}/: {written}")


QUICK_TRANSPLANT = {
    "episodes": 32,
    "fit_episodes": 8,
    "instances": 4,
    "random_sets": 1,
    "coefficients": (0.0, 1.0),
}


def cmd_transplant(args: argparse.Namespace) -> None:
    """Give a mother who never cared a donor's care units, with no RL on her."""
    coefficients = tuple(args.coefficients) if args.coefficients else None
    settings = settings_from(args, TransplantSettings, QUICK_TRANSPLANT, coefficients=coefficients)
    out = Path(args.out)
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
    report = run_transplant(args.donor, args.recipient, out, settings, device(args.device), log)
    keys = ("baby_survival_before", "baby_survival_after", "baby_survival_control", "mother_survival_change",
            "chosen_coefficient", "adapter_heldout_r2")  # fmt: skip
    if args.json:
        print(json.dumps({k: report[k] for k in ("method", "units", *keys)}))
        return
    for key in keys:
        value = report[key]
        print(f"{key:24s} {value:.3f}" if isinstance(value, float) else f"{key:24s} {value}")
    print(f"wrote {out}/: report.json, dose_response.png")


QUICK_COMPARE = {"episodes": 8, "instances": 4}


def cmd_compare(args: argparse.Namespace) -> None:
    """Is it the same drive in mothers of different seeds? CKA, aligned probe directions, unit roles."""
    settings = settings_from(args, CompareSettings, QUICK_COMPARE)
    out = Path(args.out)
    compare(args.run, out, settings, device(args.device), lambda m: print(m, flush=True))
    print((out / "report.md").read_text())
    print(f"wrote {out}/: report.json, report.md, cka.png")


def add_commands(sub: Any) -> None:
    """The analysis layer's commands, on an argparse subparsers object."""
    p = sub.add_parser("sweep", help="train and evaluate a grid of methods x seeds in parallel (resumable)")
    p.add_argument("experiment", help="experiment file (.toml or .json), e.g. analysis/experiments/*.toml")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (one torch thread each); with --backend ray: the local Ray's CPUs",
    )
    p.add_argument("--out", help="output directory (default results/sweeps/EXPERIMENT)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: a pool of worker processes; ray: one Ray task per cell (pip install -e '.[ray]')",
    )
    p.add_argument("--address", help="with --backend ray: a running Ray cluster (default: start a local one)")
    p.add_argument(
        "--gpus-per-cell",
        type=float,
        help="with --backend ray and --device cuda: the share of a GPU each cell gets (default 1)",
    )
    p.add_argument(
        "--summarize",
        action="store_true",
        help="write the tables and plots of the cells finished so far; run nothing (e.g. while it runs)",
    )
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("audit", help="which actions a run's maternal model pays for, in whose states")
    p.add_argument("run", help="an rlmf run directory")
    p.add_argument(
        "--policy",
        action="append",
        help="whose states to audit (repeatable; default: expert, random and the run's own mother)",
    )
    p.add_argument("--episodes", type=EPISODES, default=32)
    p.add_argument("--seed", type=SEED, default=777)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a setting of the run's world (e.g. lava: split=test --set quicksand=0.5)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser(
        "probe", help="where a nursery mother's care lives: assays, attribution, probes, ablation"
    )
    p.add_argument("run", help="a nursery run directory")
    p.add_argument("--out", required=True, help="directory for the figures, report.json and report.md")
    p.add_argument("--episodes", type=int, help="rollout episodes, and episodes per ablation point (200)")
    p.add_argument("--instances", type=int, help="instances of each assay situation (64)")
    p.add_argument("--site", help="hook point whose units are ranked and ablated (hook_trunk_2)")
    p.add_argument("--ranking", help="ablation or conductance (ablation)")
    p.add_argument("--mode", help="ablation: zero, mean or resample (mean)")
    p.add_argument("--sizes", type=int, nargs="+", help="numbers of units to ablate (0 1 2 4 6 8 12 16 32)")
    p.add_argument("--random-sets", dest="random_sets", type=int, help="random unit sets per size (20)")
    p.add_argument(
        "--expert", help="scripted mother whose baby survival the localisation goal is a share of (expert)"
    )
    p.add_argument("--seed", type=SEED)
    p.add_argument("--quick", action="store_true", help="small settings for a first look (under a minute)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("retarget", help="make a nursery mother care for a baby with a never-seen marker")
    p.add_argument("run", nargs="+", help="nursery run directories trained on kin babies (several: pooled)")
    p.add_argument("--out", required=True, help="directory for report.json (and the fine-tuning run)")
    p.add_argument("--method", help="steer, patch, rewrite, imprint or finetune (steer)")
    p.add_argument("--site", help="hook point to steer or patch (hook_trunk_2)")
    p.add_argument(
        "--select", help="dose choice: new (new baby's best, her survival within 5 points) or worse (new)"
    )
    p.add_argument(
        "--coefficients",
        type=finite_float,
        nargs="+",
        help="steering, rewrite or imprint coefficients (0 0.5 1 2 4 8)",
    )
    p.add_argument("--units", type=int, nargs="+", help="patched unit counts (4 8 16 32 64)")
    p.add_argument("--episodes", type=int, help="episodes per measurement (200)")
    p.add_argument("--vector-episodes", dest="vector_episodes", type=int, help="rollouts for the vector (64)")
    p.add_argument("--random-vectors", dest="random_vectors", type=int, help="random-vector controls (3)")
    p.add_argument("--finetune-steps", dest="finetune_steps", type=int, help="fine-tuning budget (2000000)")
    p.add_argument(
        "--finetune-checks", dest="finetune_checks", type=int, help="evaluations while fine-tuning"
    )
    p.add_argument("--transfer-size", dest="transfer_size", type=int, help="held-out layout size (16)")
    p.add_argument("--seed", type=SEED)
    p.add_argument("--quick", action="store_true", help="small settings for a first look")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--json", action="store_true", help="print one JSON object (progress goes to stderr)")
    p.set_defaults(func=cmd_retarget)

    p = sub.add_parser(
        "transplant", help="give a mother who never cared a donor's care units, with no RL on her"
    )
    p.add_argument("donor", help="a nursery run that cares (its top care units are transplanted)")
    p.add_argument("recipient", help="a run of the same world trained with baby_reward_weight=0")
    p.add_argument("--out", required=True, help="directory for report.json and dose_response.png")
    p.add_argument("--method", help="graft (the donor's own layers) or adapter (from hers) (graft)")
    p.add_argument("--units", type=int, help="the donor's top care units transplanted (16)")
    p.add_argument("--coefficients", type=finite_float, nargs="+", help="readout coefficients (0 0.5 1 2 4)")
    p.add_argument("--episodes", type=int, help="episodes per measurement (200)")
    p.add_argument(
        "--fit-episodes", dest="fit_episodes", type=int, help="donor rollouts for the adapter (64)"
    )
    p.add_argument("--random-sets", dest="random_sets", type=int, help="random unit-set controls (3)")
    p.add_argument("--seed", type=SEED)
    p.add_argument("--quick", action="store_true", help="small settings for a first look")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--json", action="store_true", help="print one JSON object (progress goes to stderr)")
    p.set_defaults(func=cmd_transplant)

    p = sub.add_parser("compare", help="is it the same caring drive in mothers of different seeds?")
    p.add_argument("run", nargs="+", help="nursery run directories of one world (two or more)")
    p.add_argument("--out", required=True, help="directory for report.json, report.md and cka.png")
    p.add_argument("--site", help="hidden layer compared (hook_trunk_2)")
    p.add_argument("--episodes", type=int, help="expert rollouts whose states every mother reads (64)")
    p.add_argument("--instances", type=int, help="instances of each assay situation (32)")
    p.add_argument("--seed", type=SEED)
    p.add_argument("--quick", action="store_true", help="small settings for a first look")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("develop", help="how a nursery mother's care developed: her snapshots over training")
    p.add_argument(
        "run", help="a nursery run directory trained with snapshots (snapshot_every > 0, the default)"
    )
    p.add_argument(
        "--out", help="directory for develop.png, develop.csv and develop.json (default: RUN/develop)"
    )
    p.add_argument("--episodes", type=EPISODES, help="evaluation episodes per snapshot (200)")
    p.add_argument("--instances", type=int, help="instances of each assay situation (32)")
    p.add_argument(
        "--probe-episodes", dest="probe_episodes", type=int, help="expert episodes for the probes (64)"
    )
    p.add_argument("--site", help="hidden layer probed and ablated (hook_trunk_2)")
    p.add_argument("--units", type=int, help="the final mother's top units ablated in every snapshot (16)")
    p.add_argument("--seed", type=SEED)
    p.add_argument("--quick", action="store_true", help="small settings for a first look")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=cmd_develop)
    add_lineage(sub)
    add_switch(sub)
    add_abandon(sub)


def add_lineage(sub: Any) -> None:
    p = sub.add_parser(
        "lineage", help="a chain of generations: the caring units ablated in one generation at a time"
    )
    p.add_argument(
        "run", nargs="+", help="nursery run directories trained with generations > 1 (several: pooled)"
    )
    p.add_argument(
        "--out", help="directory for report.json and report.md (default: RUN/lineage; several runs: needed)"
    )
    p.add_argument("--episodes", type=EPISODES, help="evaluation episodes per condition (200)")
    p.add_argument("--instances", type=int, help="instances of each assay situation, for the ranking (32)")
    p.add_argument("--site", help="hidden layer whose units are ranked and ablated (hook_trunk_2)")
    p.add_argument("--units", type=int, help="top-ranked units ablated (16)")
    p.add_argument("--random-sets", dest="random_sets", type=int, help="random unit sets per generation (5)")
    p.add_argument("--seed", type=SEED)
    p.add_argument("--quick", action="store_true", help="small settings for a first look")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=cmd_lineage)


def add_switch(sub: Any) -> None:
    p = sub.add_parser(
        "switch", help="the off switch: probe 'another baby is possible' in a mother, ablate what carries it"
    )
    p.add_argument("run", help="a nursery run directory trained with births_per_life > 1")
    p.add_argument("--out", help="directory for report.json and report.md (default: RUN/switch)")
    p.add_argument("--episodes", type=EPISODES, help="rollout episodes for the probes (200)")
    p.add_argument("--instances", type=int, help="instances of each abandonment situation (32)")
    p.add_argument("--site", help="hidden layer whose units are ranked and ablated (hook_trunk_2)")
    p.add_argument("--units", type=int, help="units edited (16)")
    p.add_argument("--random-sets", dest="random_sets", type=int, help="random unit sets (10)")
    p.add_argument("--seed", type=SEED)
    p.add_argument("--quick", action="store_true", help="small settings for a first look")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=cmd_switch)


def add_abandon(sub: Any) -> None:
    p = sub.add_parser(
        "abandon", help="the off switch by the clock: giving up early (another baby fits) vs late, per mother"
    )
    p.add_argument(
        "run", nargs="+", help="nursery run directories, or sweep directories (every trained run in them)"
    )
    p.add_argument(
        "--out", help="directory for report.json and report.md (default: RUN/abandon; several: needed)"
    )
    p.add_argument("--instances", type=int, help="instances of each assay situation at each time (64)")
    p.add_argument("--late", type=int, help="the late situations happen this many steps before the end (5)")
    p.add_argument("--seed", type=SEED)
    p.add_argument("--quick", action="store_true", help="small settings for a first look")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=cmd_abandon)


def main(argv: list[str] | None = None) -> int:
    return run(argv, add_commands)


if __name__ == "__main__":
    sys.exit(main())
