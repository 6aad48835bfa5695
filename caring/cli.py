"""The `caring` command. Bad input gets one `caring: error: ...` line and exit status 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import torch

from caring.files import write_atomic, write_json
from worlds.config import ConfigError, build_config, load_config_file, parse_sets

DEMO_STEPS = 12_000_000  # the default mother's training budget: under 7 minutes on a 2-core CPU
# The default mother: RLMF with adaptive weaning, M's learned judgement weighted 0.1 against its rules:
# the best of the weights 0, 0.1, 0.3 and 1 over five seeds; at 1 she fails (README "Training").
DEMO_TRAINING = {"method": "rlmf", "beta_schedule": "adaptive", "mat_learned_weight": 0.1}
DEMO_MOTHER = f"trained (rlmf, adaptive, learned M x {DEMO_TRAINING['mat_learned_weight']})"


class CliError(Exception):
    """A user mistake: printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(message)


def _world_config(args: argparse.Namespace):
    from caring.tasks import get_task

    task = get_task(args.world)
    overrides: dict[str, Any] = {}
    if getattr(args, "policy", None) and (Path(args.policy) / "config.json").exists():
        from caring.train import run_world

        trained_on, world = run_world(Path(args.policy))  # a trained mother's own world
        if trained_on != task.name:
            raise ConfigError(f"{args.policy} was trained on the {trained_on} world, not {task.name}")
        overrides.update(dataclasses.asdict(world))
    overrides.update(load_config_file(args.config) if args.config else {})
    overrides.update(parse_sets(args.set))
    return build_config(task.config_class, overrides)


def _core(args: argparse.Namespace):
    """(task, core) of the world the arguments name, with their settings."""
    from caring.tasks import task_of

    config = _world_config(args)
    task = task_of(config)
    return task, task.make_core(config, _device(args.device))


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; valid devices: cpu, cuda, auto")
    return name


# ---------------------------------------------------------------------------- commands
def cmd_eval(args: argparse.Namespace) -> None:
    from caring.policies import load_policy

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
    task, core = _core(args)
    result = {
        "policy": args.policy,
        **task.evaluate(core, load_policy(args.policy, core, task), args.episodes, args.seed),
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        if isinstance(value, list):
            value = "[" + ", ".join(f"{v:.4f}" for v in value) + "]"
        print(f"{key:32s} {value:.4f}" if isinstance(value, float) else f"{key:32s} {value}")


def render_episode(task: Any, core: Any, policy: Any, seed: int, steps: int, renderer: Any) -> list:
    """Frames of one episode, up to `steps` steps or its end."""
    from caring.evaluate import episode_keys

    state, obs = core.reset(episode_keys(seed, 1, core.device))
    frames = [renderer.draw(state)]
    with torch.inference_mode():
        for _ in range(min(steps, core.config.max_cycles)):
            state, out = core.step(state, policy(state, obs))
            obs = out.obs
            frames.append(renderer.draw(state))
            if bool(task.ended(state, out)[0]):
                break
    return frames


def cmd_render(args: argparse.Namespace) -> None:
    from caring.plots import save_gif
    from caring.policies import load_policy

    task, core = _core(args)
    policy = load_policy(args.policy, core, task)
    if args.out and not args.out.endswith(".gif"):
        raise ConfigError(f"--out must name a .gif file, got {args.out!r}")
    renderer = task.renderer(core, window=args.out is None)
    frames = render_episode(task, core, policy, args.seed, args.steps, renderer)
    renderer.close()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        save_gif(frames, args.out)
        print(f"wrote {args.out} ({len(frames)} frames)")


def cmd_bench(args: argparse.Namespace) -> None:
    from caring.bench import run_bench

    devices = (
        [_device(args.device)]
        if args.device != "all"
        else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train:
        from caring.bench import bench_train

        rows = [
            r for d in devices for r in bench_train(_world_config(args), ["ppo", "rlmf"], args.repeats, d)
        ]
        if args.json:
            print(
                json.dumps({"world": args.world, "torch_threads": torch.get_num_threads(), "results": rows})
            )
            return
        for r in rows:
            parts = ", ".join(
                f"{k[:-2]} {r[k]:.3f}s" for k in ("env_s", "inference_s", "maternal_s", "update_s")
            )
            print(
                f"train {r['method']:5s} {r['device']:5s} worlds={r['worlds']} "
                f"{r['agent_steps_per_s']:>10,.0f} agent-steps/s   per update: {parts}"
            )
        return
    report = run_bench(_world_config(args), args.batches, args.repeats, devices)
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"world={report['world']} torch_threads={report['torch_threads']} "
        f"state_bytes_per_world={report['state_bytes_per_world']} (median of {args.repeats})"
    )
    for row in report["results"]:
        print(
            f"{row['mode']:10s} {row['device']:5s} B={row['batch']:<5d} "
            f"{row['agent_steps_per_s']:>14,.0f} agent-steps/s"
            + (
                f"   {row['ops_per_step']} ops/step, {row['step_ms']:.2f} ms/step, "
                f"{row['observe_share']:.0%} building observations"
                if "ops_per_step" in row
                else ""
            )
        )


def cmd_train(args: argparse.Namespace) -> None:
    from caring.train import TrainConfig, start_run

    world = _world_config(args)
    overrides: dict[str, Any] = parse_sets(args.train_set)
    for key in ("method", "beta_schedule", "steps", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.resume and args.steps is None:  # continue to the run's own budget, not the default one
        from caring.train import read_json

        overrides["steps"] = read_json(Path(args.out) / "config.json")["train"]["steps"]
    config = build_config(TrainConfig, overrides)
    trainer = start_run(Path(args.out), world, config, _device(args.device), args.resume)
    plots = _train_with_progress(trainer, announce_maternal=not args.resume)
    print(f"trained {trainer.update} updates into {args.out}: metrics.csv, mother.safetensors, {plots}")


def _train_with_progress(trainer, announce_maternal: bool) -> str:
    """Run a trainer to its end under a progress bar (steps/s, β₁, the task's headline), then plot it."""
    from tqdm import tqdm

    from caring.plots import plot_run

    report_path = trainer.out / "maternal.json"
    if trainer.maternal is not None and report_path.exists() and announce_maternal:
        report = json.loads(report_path.read_text())
        pair = next(k for k in report if k.startswith("heldout_expert_vs_"))
        versus = pair.removeprefix("heldout_expert_vs_").removesuffix("_accuracy")
        print(
            f"maternal model: held-out balanced accuracy {report['heldout_balanced_accuracy']:.3f} "
            f"(expert vs {versus} {report[pair]:.3f})"
        )
    headline = trainer.task.headline
    bar = tqdm(total=trainer.updates_total, initial=trainer.update, unit="update", disable=None)

    def progress(update: int, total: int, row: dict, speed: float) -> None:
        bar.update(1)
        bar.set_postfix(
            steps_s=f"{speed:,.0f}", beta1=f"{row['beta1']:.2f}", **{headline: f"{row[headline]:.2f}"}
        )

    trainer.run(progress)
    bar.close()
    return ", ".join(p.name for p in plot_run(trainer.out))  # learning curves, beta1 and harm


def cmd_demo(args: argparse.Namespace) -> None:
    """The main job on the built-in default: train the default mother (DEMO_TRAINING), evaluate her
    against every scripted mother, and write the table, her training plots and GIFs of both."""
    from caring.plots import save_gif
    from caring.policies import TrainedMother
    from caring.report import scripted_table
    from caring.train import TrainConfig, start_run, started_with

    task, core = _core(args)
    out = Path(args.out)
    policies = {name: make(core) for name, make in task.scripted.items()}
    written = ["scripted_mothers.md", "scripted_mothers.json", "nursery_expert.gif"]
    if args.steps:
        run = out / "mother"
        config = build_config(TrainConfig, {**DEMO_TRAINING, "steps": args.steps, "seed": args.seed})
        resume = (run / "config.json").exists()  # an interrupted demo continues where it stopped
        if resume and not started_with(run, core.config, config):
            raise ConfigError(f"{run} holds a run with other settings; delete it or choose another --out")
        print(f"training the default mother into {run}: {DEMO_MOTHER} ...")
        trainer = start_run(run, core.config, config, _device(args.device), resume)
        _train_with_progress(trainer, announce_maternal=True)
        policies = {DEMO_MOTHER: TrainedMother(trainer.net)} | policies
        written += [
            "mother/ (weights, metrics.csv, learning_curves.png, beta_harm.png)",
            "nursery_trained.gif",
        ]
    rows = []
    for name, policy in policies.items():
        print(f"evaluating {name} on {args.episodes} episodes ...", flush=True)
        rows.append({"policy": name, **task.evaluate(core, policy, args.episodes, args.seed)})
    write_atomic(out / "scripted_mothers.json", json.dumps(rows, indent=1))
    table = scripted_table(rows)
    write_atomic(out / "scripted_mothers.md", table)
    renderer = task.renderer(core)
    for name, gif in (("expert", "nursery_expert.gif"), (DEMO_MOTHER, "nursery_trained.gif")):
        if name in policies:
            frames = render_episode(task, core, policies[name], args.seed, core.config.max_cycles, renderer)
            save_gif(frames, str(out / gif))
    print(table)
    print(f"wrote into {out}: " + ", ".join(written))


def cmd_sweep(args: argparse.Namespace) -> None:
    from analysis.sweep import load_experiment, run_sweep

    experiment = load_experiment(args.experiment)  # rejects a bad file before anything runs
    if args.workers < 1:
        raise ConfigError(f"--workers={args.workers} must be at least 1")
    out = Path(args.out or f"results/sweeps/{experiment.name}")
    failures = run_sweep(
        experiment, out, args.workers, _device(args.device), log=lambda m: print(m, flush=True)
    )
    plots = "summary_bars.png, headline_by_world.png, learning_curves.png"
    print(f"wrote {out}/: results.csv, summary.md/.json, speed.json, {plots}")
    print((out / "summary.md").read_text())
    if failures:
        raise ConfigError(f"{failures} cell(s) failed; fix the cause and re-run the same command to resume")


def cmd_audit(args: argparse.Namespace) -> None:
    """Which actions does a run's maternal model pay for, in the states a policy visits?"""
    from analysis.maternal_audit import action_preferences, format_audit, load_run_maternal
    from caring.policies import load_policy
    from caring.tasks import get_task
    from caring.train import run_world

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
    run = Path(args.run)
    if not (run / "config.json").exists():
        raise ConfigError(f"{args.run} is not a run directory (no config.json)")
    name, world = run_world(run)
    task = get_task(name)
    world = build_config(task.config_class, {**dataclasses.asdict(world), **parse_sets(args.set)})
    core = task.make_core(world, _device(args.device))
    model = load_run_maternal(run, core, task)
    policies = args.policy or ["expert", "random", args.run]
    audits = {
        policy: action_preferences(
            task, core, model, load_policy(policy, core, task), args.episodes, args.seed
        )
        for policy in policies
    }
    if args.json:
        print(json.dumps({"run": args.run, "episodes": args.episodes, "seed": args.seed, "audits": audits}))
        return
    print("\n\n".join(format_audit(policy, audit) for policy, audit in audits.items()))


QUICK_PROBE = {"episodes": 32, "instances": 8, "sizes": (0, 4, 8), "random_sets": 3}


def cmd_probe(args: argparse.Namespace) -> None:
    """Assays, attribution, probes and the ablation curve of one nursery run, as figures and JSON."""
    from analysis.circuits import ProbeSettings, run_probe

    values = {
        k: getattr(args, k)
        for k in ("episodes", "instances", "site", "ranking", "mode", "random_sets", "seed")
    }
    values["sizes"] = tuple(args.sizes) if args.sizes else None
    values = {k: v for k, v in values.items() if v is not None}
    settings = ProbeSettings(**{**(QUICK_PROBE if args.quick else {}), **values})
    out = Path(args.out)
    run_probe(args.run, out, settings, _device(args.device), lambda m: print(m, flush=True))
    print((out / "report.md").read_text())
    print(
        f"wrote {out}/: report.json, report.md, assays.png, attribution.png, probes.png, ablation_curve.png"
    )


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
    "goal_met_before",
    "goal_met",
)


def cmd_retarget(args: argparse.Namespace) -> None:
    """Make a nursery mother care for foster babies: steering, unit patching or fine-tuning."""
    from analysis.retarget import RetargetSettings, finished_report, pooled, run_retarget

    names = (
        "method",
        "site",
        "episodes",
        "vector_episodes",
        "random_vectors",
        "finetune_steps",
        "finetune_checks",
        "transfer_size",
        "seed",
    )
    values: dict[str, Any] = {k: getattr(args, k) for k in names}
    values["coefficients"] = tuple(args.coefficients) if args.coefficients else None
    values["units"] = tuple(args.units) if args.units else None
    values = {k: v for k, v in values.items() if v is not None}
    settings = RetargetSettings(**{**(QUICK_RETARGET if args.quick else {}), **values})
    out = Path(args.out)
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else (lambda m: print(m, flush=True))
    if len(args.run) == 1:
        summary = run_retarget(args.run[0], out, settings, _device(args.device), log)
        written = "report.json, dose_response.png"
    else:  # several runs (training seeds): one directory each, then the pooled numbers
        reports = []
        for i, run in enumerate(args.run):
            report = finished_report(run, out / f"run{i}", settings)
            log(f"run {i + 1}/{len(args.run)}: {run}" + (" (finished earlier: reused)" if report else ""))
            reports.append(report or run_retarget(run, out / f"run{i}", settings, _device(args.device), log))
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
    print(f"wrote {out}/: {written}")


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="caring", description="Train, measure, take apart and retarget caring mothers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def world_args(p: argparse.ArgumentParser, positional: bool = True) -> None:
        if positional:
            p.add_argument("world", help="world name (nursery, lava)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a world parameter (repeatable); see `caring params`",
        )
        p.add_argument("--config", help="a .json or .toml file of world parameters")
        p.add_argument("--device", default="cpu", help="cpu, cuda or auto")

    p = sub.add_parser("eval", help="evaluate a policy and print episode metrics")
    world_args(p)
    p.add_argument(
        "--policy",
        required=True,
        help="a scripted policy (nursery: expert, negligent, random, expert-no-*; lava: expert, shortcut, "
        "random) or a run directory",
    )
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train mothers with PPO (two critics), plain or with RLMF")
    world_args(p)
    p.add_argument(
        "--method", help="ppo, rlmf, rlhf, rlaif, ppo-lagrangian, choice, kindness or tom (default rlmf)"
    )
    p.add_argument("--beta-schedule", dest="beta_schedule", help="constant, linear, exp or adaptive")
    p.add_argument("--steps", type=int, help="agent-steps of experience")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument(
        "--train-set",
        dest="train_set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training hyperparameter (repeatable), e.g. worlds=512",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("render", help="write a GIF of one episode (or open a window without --out)")
    world_args(p)
    p.add_argument("--policy", required=True)
    p.add_argument("--out", help="path of the .gif to write; omit to watch live")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=200)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("bench", help="agent-steps/s of the PettingZoo env and the batched core")
    p.add_argument("--world", default="nursery")
    world_args(p, positional=False)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024, 4096])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument(
        "--train",
        action="store_true",
        help="end-to-end training speed (ppo and rlmf; --repeats = timed updates)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench, device="all")

    p = sub.add_parser(
        "demo", help="the main job: train the default mother, evaluate her and the scripted ones, GIFs"
    )
    world_args(p, positional=False)
    p.add_argument("--out", default="results")
    p.add_argument(
        "--steps", type=int, default=DEMO_STEPS, help="agent-steps to train the mother (0: scripted only)"
    )
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo, world="nursery")

    p = sub.add_parser("sweep", help="train and evaluate a grid of methods x seeds in parallel (resumable)")
    p.add_argument("experiment", help="experiment file (.toml or .json), e.g. analysis/experiments/*.toml")
    p.add_argument("--workers", type=int, default=1, help="worker processes (one torch thread each)")
    p.add_argument("--out", help="output directory (default results/sweeps/EXPERIMENT)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("audit", help="which actions a run's maternal model pays for, in whose states")
    p.add_argument("run", help="an rlmf run directory")
    p.add_argument(
        "--policy",
        action="append",
        help="whose states to audit (repeatable; default: expert, random and the run's own mother)",
    )
    p.add_argument("--episodes", type=int, default=32)
    p.add_argument("--seed", type=int, default=777)
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
    p.add_argument("--seed", type=int)
    p.add_argument("--quick", action="store_true", help="small settings for a first look (under a minute)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("retarget", help="make a nursery mother care for a baby with a never-seen marker")
    p.add_argument("run", nargs="+", help="nursery run directories trained on kin babies (several: pooled)")
    p.add_argument("--out", required=True, help="directory for report.json (and the fine-tuning run)")
    p.add_argument("--method", help="steer, patch or finetune (steer)")
    p.add_argument("--site", help="hook point to steer or patch (hook_trunk_2)")
    p.add_argument("--coefficients", type=float, nargs="+", help="steering coefficients (0 0.5 1 2 4 8)")
    p.add_argument("--units", type=int, nargs="+", help="patched unit counts (4 8 16 32 64)")
    p.add_argument("--episodes", type=int, help="episodes per measurement (200)")
    p.add_argument("--vector-episodes", dest="vector_episodes", type=int, help="rollouts for the vector (64)")
    p.add_argument("--random-vectors", dest="random_vectors", type=int, help="random-vector controls (3)")
    p.add_argument("--finetune-steps", dest="finetune_steps", type=int, help="fine-tuning budget (2000000)")
    p.add_argument(
        "--finetune-checks", dest="finetune_checks", type=int, help="evaluations while fine-tuning"
    )
    p.add_argument("--transfer-size", dest="transfer_size", type=int, help="held-out layout size (16)")
    p.add_argument("--seed", type=int)
    p.add_argument("--quick", action="store_true", help="small settings for a first look")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--json", action="store_true", help="print one JSON object (progress goes to stderr)")
    p.set_defaults(func=cmd_retarget)

    p = sub.add_parser("params", help="list every world parameter with its default and range")
    p.add_argument("world", nargs="?", default="nursery")
    p.set_defaults(func=cmd_params)
    return parser


def cmd_params(args: argparse.Namespace) -> None:
    from caring.tasks import get_task
    from worlds.config import describe

    for name, kind, default, meaning in describe(get_task(args.world).config_class):
        print(f"{name:20s} {kind:6s} {default!s:8s} {meaning}")


def main(argv: list[str] | None = None) -> int:
    # Figures are only ever written to files: no window backend (a notebook that already imported
    # matplotlib keeps its own, so its figures still show inline).
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except (CliError, ConfigError, ValueError, OSError) as err:
        print(f"caring: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("caring: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
