"""The training layer's commands of the `caring` CLI (train, eval, render, bench, demo, params) and the
CLI's machinery: argument parsing, world settings, devices, and one `caring: error: ...` line with exit
status 2 for bad input. The CLI itself (`analysis.cli`) adds the analysis commands on top."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import torch

from caring.checkpoints import writing
from caring.config import TrainConfig, train_config
from caring.episodes import MAX_EPISODES, MAX_SEED, render_episode
from caring.files import write_atomic
from caring.policies import TrainedMother, load_policy
from caring.runs import is_run, run_training, run_world, started_with
from caring.streams import STREAMS, get_stream
from caring.tasks import get_task, task_of
from worlds.config import ConfigError, build_config, describe, load_config_file, parse_sets


def mother_label(config: Any) -> str:
    """How a trained mother is named in tables: her method as its stream describes it."""
    return f"trained ({get_stream(config.method).label(config)})"


DEMO_MOTHER = mother_label(TrainConfig())  # `caring demo` trains the default recipe


class CliError(Exception):
    """A user mistake: printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line; a value our types refused reads "--seed must be at least 0, got -1"."""
        raise CliError(re.sub(r"^argument (\S+): must ", r"\1 must ", message))


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi], the range in the message (a huge number is then one
    clear line, not an overflow deep inside torch or an allocation of 80 GB)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {value}")
        if value > hi:
            raise argparse.ArgumentTypeError(f"must be at most {hi}, got {value}")
        return value

    return parse


def finite_float(text: str) -> float:
    """An argparse type: a finite float (NaN would pass every later range check)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


# One rule for the seed of every command: training's (a non-negative int64 with room to spare).
SEED = bounded_int(0, MAX_SEED)
EPISODES = bounded_int(1, MAX_EPISODES)


def world_config(args: argparse.Namespace) -> Any:
    """The world the arguments name (a trained mother's own world under --config and --set)."""
    task = get_task(args.world)
    overrides: dict[str, Any] = {}
    if getattr(args, "policy", None) and is_run(args.policy):
        trained_on, world = run_world(Path(args.policy))  # a trained mother's own world
        if trained_on != task.name:
            raise ConfigError(f"{args.policy} was trained on the {trained_on} world, not {task.name}")
        overrides.update(dataclasses.asdict(world))
    overrides.update(load_config_file(args.config) if args.config else {})
    overrides.update(parse_sets(args.set))
    return build_config(task.config_class, overrides)


def make_core(args: argparse.Namespace) -> tuple[Any, Any]:
    """(task, core) of the world the arguments name, with their settings."""
    config = world_config(args)
    task = task_of(config)
    return task, task.make_core(config, device(args.device))


def device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; valid devices: cpu, cuda, auto")
    return name


# ---------------------------------------------------------------------------- commands
def cmd_eval(args: argparse.Namespace) -> None:
    task, core = make_core(args)
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


def cmd_render(args: argparse.Namespace) -> None:
    from caring.plots import save_gif

    task, core = make_core(args)
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
        [device(args.device)]
        if args.device != "all"
        else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train:
        from caring.bench import bench_train

        settings = parse_sets(args.train_set)
        world = world_config(args)
        rows = [r for d in devices for r in bench_train(world, ["ppo", "rlmf"], args.repeats, d, settings)]
        if args.json:
            print(
                json.dumps({"world": args.world, "torch_threads": torch.get_num_threads(), "results": rows})
            )
            return
        for r in rows:
            parts = ", ".join(
                f"{k[:-2]} {r[k]:.3f}s" for k in ("env_s", "inference_s", "stream_s", "update_s")
            )
            print(
                f"train {r['method']:5s} {r['device']:5s} worlds={r['worlds']} rollout={r['rollout']} "
                f"{r['agent_steps_per_s']:>10,.0f} agent-steps/s, {r['share_of_ceiling']:.0%} of the ceiling "
                f"({r['ceiling_agent_steps_per_s']:,.0f})   per update: {parts}"
            )
        return
    report = run_bench(world_config(args), args.batches, args.repeats, devices, args.compiled)
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
    from caring.train import start_run

    if args.resume:  # a resumed run continues exactly: only its budget may change
        given = {
            "--set": args.set,
            "--config": args.config,
            "--train-set": args.train_set,
            "--method": args.method,
            "--beta-schedule": args.beta_schedule,
            "--seed": args.seed,
        }
        changed = [flag for flag, value in given.items() if value not in (None, [])]
        if changed:
            raise ConfigError(
                f"{changed[0]} cannot change a resumed run (it keeps its own settings); only --steps can"
            )
    world = world_config(args)
    task = task_of(world)
    overrides: dict[str, Any] = parse_sets(args.train_set)
    for key in ("method", "beta_schedule", "steps", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.resume and args.steps is None:  # continue to the run's own budget, not the default one
        overrides["steps"] = run_training(Path(args.out)).steps
    config = train_config(task, overrides)
    trainer = start_run(Path(args.out), world, config, device(args.device), args.resume)
    plots = train_with_progress(trainer)
    print(f"trained {trainer.update} updates into {args.out}: metrics.csv, mother.safetensors, {plots}")


def train_with_progress(trainer: Any) -> str:
    """Run a trainer to its end under a progress bar (steps/s, β₁, the task's headline), then plot it."""
    from tqdm import tqdm

    from caring.plots import plot_run

    headline = trainer.task.headline
    bar = tqdm(total=trainer.updates_total, initial=trainer.update, unit="update", disable=None)

    def progress(update: int, total: int, row: dict, speed: float) -> None:
        bar.update(1)
        bar.set_postfix(
            steps_s=f"{speed:,.0f}", beta1=f"{row['beta1']:.2f}", **{headline: f"{row[headline]:.2f}"}
        )

    with writing(trainer.out):  # a full disk: one line, the last good checkpoint, resumable
        trainer.run(progress)
        bar.close()
        return ", ".join(p.name for p in plot_run(trainer.out))  # learning curves, beta1 and harm


def cmd_demo(args: argparse.Namespace) -> None:
    """The main job on the built-in default: train the default mother (the world's default recipe, as
    `caring train` with no flags), evaluate her against every scripted mother, and write the table, her
    training plots and GIFs of both."""
    from caring.plots import save_gif
    from caring.report import scripted_table
    from caring.train import start_run

    task, core = make_core(args)
    out = Path(args.out)
    policies = {name: make(core) for name, make in task.scripted.items()}
    written = ["scripted_mothers.md", "scripted_mothers.json", "nursery_expert.gif"]
    trained = None
    if args.steps != 0:
        run = out / "mother"
        overrides = {"seed": args.seed} | ({"steps": args.steps} if args.steps is not None else {})
        config = train_config(task, overrides)
        resume = is_run(run)  # an interrupted demo continues where it stopped
        if resume and not started_with(run, core.config, config):
            raise ConfigError(f"{run} holds a run with other settings; delete it or choose another --out")
        trained = mother_label(config)
        print(f"training the default mother into {run}: {trained}, {config.steps:,} agent-steps ...")
        trainer = start_run(run, core.config, config, device(args.device), resume)
        train_with_progress(trainer)
        policies = {trained: TrainedMother(trainer.net)} | policies
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
    for name, gif in (("expert", "nursery_expert.gif"), (trained, "nursery_trained.gif")):
        if name in policies:
            frames = render_episode(task, core, policies[name], args.seed, core.config.max_cycles, renderer)
            save_gif(frames, str(out / gif))
    print(table)
    print(f"wrote into {out}: " + ", ".join(written))


# ---------------------------------------------------------------------------- parser
def world_args(p: argparse.ArgumentParser, positional: bool = True) -> None:
    """The arguments of every command that takes a world: its name, --set, --config and --device."""
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


def train_set_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    """--train-set KEY=VALUE (repeatable): training settings over the world's defaults."""
    p.add_argument(
        "--train-set", dest="train_set", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


TRAIN_HELP = (
    "Train mothers with PPO and two critics. With no flags the recipe that works: in the nursery RLMF "
    "with adaptive beta1 and M's learned judgement weighted 0.1 against its rules, 12M agent-steps "
    "(about 7 minutes on a 2-core CPU; the default mother of `caring demo`, which saves about 89% of "
    "her babies, the expert 100%); in lava the lava experiment's RLMF settings, 1.5M agent-steps. "
    "`caring params WORLD --train` lists every setting with the world's default."
)


def add_commands(sub: Any) -> None:
    """The training layer's commands, on an argparse subparsers object."""
    p = sub.add_parser("eval", help="evaluate a policy and print episode metrics")
    world_args(p)
    p.add_argument(
        "--policy",
        required=True,
        help="a scripted policy (nursery: expert, negligent, random, expert-no-*; lava: expert, shortcut, "
        "random) or a run directory",
    )
    p.add_argument("--episodes", type=EPISODES, default=500)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train mothers (default: the recipe that works)", description=TRAIN_HELP)
    world_args(p)
    p.add_argument("--method", help=f"training method: {', '.join(STREAMS)} (default: rlmf)")
    p.add_argument(
        "--beta-schedule", dest="beta_schedule", help="constant, linear, exp or adaptive (the default)"
    )
    p.add_argument("--steps", type=int, help="agent-steps of experience (default: the world's recipe)")
    p.add_argument("--seed", type=SEED)
    p.add_argument("--out", required=True, help="run directory")
    train_set_arg(
        p, "override a training setting (repeatable), e.g. worlds=512; see `caring params WORLD --train`"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("render", help="write a GIF of one episode (or open a window without --out)")
    world_args(p)
    p.add_argument("--policy", required=True)
    p.add_argument("--out", help="path of the .gif to write; omit to watch live")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--steps", type=bounded_int(1, 10**6), default=200)
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
        help="end-to-end training speed (ppo and rlmf; --repeats = timed updates), beside its ceiling",
    )
    train_set_arg(
        p, "with --train: a training setting other than the world's default (repeatable), e.g. worlds=1024"
    )
    p.add_argument(
        "--compiled",
        action="store_true",
        help="also the PettingZoo view with compile=True (built and cached on first use: 1-3 minutes)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench, device="all")

    p = sub.add_parser(
        "demo", help="the main job: train the default mother, evaluate her and the scripted ones, GIFs"
    )
    world_args(p, positional=False)
    p.add_argument("--out", default="results")
    p.add_argument(
        "--steps", type=int, help="agent-steps to train the mother (default: the recipe's; 0: scripted only)"
    )
    p.add_argument("--episodes", type=EPISODES, default=500)
    p.add_argument("--seed", type=SEED, default=0)
    p.set_defaults(func=cmd_demo, world="nursery")

    p = sub.add_parser("params", help="list every world (or, with --train, training) setting")
    p.add_argument("world", nargs="?", default="nursery")
    p.add_argument(
        "--train", action="store_true", help="list the training settings, with this world's defaults"
    )
    p.set_defaults(func=cmd_params)


def cmd_params(args: argparse.Namespace) -> None:
    task = get_task(args.world)
    if args.train:
        defaults = dataclasses.asdict(train_config(task))
        rows = [(name, kind, defaults[name], meaning) for name, kind, _, meaning in describe(TrainConfig)]
    else:
        rows = describe(task.config_class)
    for name, kind, default, meaning in rows:
        print(f"{name:22s} {kind:6s} {default!s:10s} {meaning}")


def run(argv: list[str] | None, *extensions: Callable[[Any], None]) -> int:
    """Parse and run one command of the CLI made of this layer's commands and `extensions` (functions
    that add commands to the subparsers). Bad input: one `caring: error: ...` line, exit status 2."""
    # Figures are only ever written to files: no window backend (a notebook that already imported
    # matplotlib keeps its own, so its figures still show inline).
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        parser = _Parser(prog="caring", description="Train, measure, take apart and retarget caring mothers.")
        sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
        for add in (add_commands, *extensions):
            add(sub)
        args = parser.parse_args(argv)
        args.func(args)
    except (CliError, ConfigError, ValueError, OSError) as err:
        print(f"caring: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("caring: interrupted", file=sys.stderr)
        return 130
    return 0
