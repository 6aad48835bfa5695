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
from caring.config import TrainConfig, train_config, world_preset
from caring.episodes import MAX_EPISODES, MAX_SEED, render_episode
from caring.files import write_atomic
from caring.policies import TrainedMother, load_policy
from caring.progress import PROGRESS_EVERY_S, Cockpit, plot
from caring.runs import is_run, run_training, run_world, started_with
from caring.streams import STREAMS, get_stream
from caring.tasks import get_task, task_of
from caring.viewer import KEYS, OVERLAYS, Viewer
from worlds.config import ConfigError, build_config, describe, load_config_file, parse_sets, with_preset


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
    base: dict[str, Any] = {}
    if getattr(args, "policy", None) and is_run(args.policy):
        trained_on, world = run_world(Path(args.policy))  # a trained mother's own world
        if trained_on != task.name:
            raise ConfigError(f"{args.policy} was trained on the {trained_on} world, not {task.name}")
        base = dataclasses.asdict(world)
    given = {"preset": args.preset} if getattr(args, "preset", None) else {}
    given.update(load_config_file(args.config) if args.config else {})
    given.update(parse_sets(args.set))
    return build_config(task.config_class, with_preset(task.config_class, base, given))


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


OVERLAY_HELP = "; ".join(f"{name}: {meaning}" for name, meaning in OVERLAYS.items())
RENDER_HELP = f"""Watch one episode in a window: the world, and a panel with a legend, each mother's
energy and her baby's hunger and health (which she cannot see), the action she takes and, for a trained
mother, her action probabilities and her two critics' values (V_task, V_mat). At the episode's end the
window shows how it went and waits; a summary line (babies alive / born, harm events, causes of death)
is printed.

keys: {KEYS[0]}
      {KEYS[1]}

--out writes the episode as a GIF instead, --screenshot one step of the viewer as a PNG, e.g.
  caring render nursery --policy runs/x --seed 3 --overlay saliency --screenshot viewer.png --at 40"""


def overlay_name(text: str) -> str:
    """An argparse type: the name of an attribution overlay."""
    if text not in OVERLAYS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(OVERLAYS)}, got {text!r}")
    return text


def check_render_args(args: argparse.Namespace) -> None:
    """Flags that make no sense together, refused before anything is built."""
    if args.out and not args.out.endswith(".gif"):
        raise ConfigError(f"--out must name a .gif file, got {args.out!r}")
    if args.screenshot and not args.screenshot.endswith(".png"):
        raise ConfigError(f"--screenshot must name a .png file, got {args.screenshot!r}")
    if args.out and args.screenshot:
        raise ConfigError(
            "--out (a GIF of the episode) and --screenshot (a PNG of one step) cannot be combined"
        )
    if args.at is not None and not args.screenshot:
        raise ConfigError("--at is the step of a --screenshot; give --screenshot FILE.png")
    if args.screenshot and args.steps is not None:
        raise ConfigError("--steps does not apply to --screenshot; --at chooses its step")
    if args.every is not None and not args.out:
        raise ConfigError("--every is for --out GIFs")
    if args.panel and not args.out:
        raise ConfigError("--panel is for --out GIFs; the window and --screenshot always show the panel")


def cmd_render(args: argparse.Namespace) -> None:
    """Watch one episode in the viewer's window, or write it as a GIF (--out) or one step of the viewer
    as a PNG (--screenshot)."""
    from PIL import Image

    from caring.plots import save_gif

    check_render_args(args)
    task, core = make_core(args)
    policy = load_policy(args.policy, core, task)
    if args.overlay and not isinstance(policy, TrainedMother):
        raise ConfigError(
            f"--overlay {args.overlay} needs a trained mother's network (a run directory); "
            f"{args.policy!r} is a scripted policy"
        )
    for path in (args.out, args.screenshot):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    renderer = task.renderer(core, window=not (args.out or args.screenshot))
    try:
        viewer = Viewer(task, core, policy, renderer, args.overlay, args.fps)
        if args.screenshot:
            frame, episode = viewer.screenshot(args.seed, args.at or 0)
            Image.fromarray(frame).save(args.screenshot)
            print(f"wrote {args.screenshot} (t={int(episode.now.state.t[0])})")
        elif args.out:
            frames, episode = viewer.record(args.seed, args.steps, args.panel)
            episode.report()
            if args.every:
                frames = frames[:: args.every] + ([frames[-1]] if (len(frames) - 1) % args.every else [])
            save_gif(frames, args.out, args.fps)
            print(f"wrote {args.out} ({len(frames)} frames)")
        else:  # with --steps the window closes after them; without, it waits at the episode's end
            viewer.watch(args.seed, args.steps, wait=args.steps is None)
    finally:
        renderer.close()


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
    if args.sb3:
        from caring.bench import bench_sb3

        try:
            rows = bench_sb3(world_config(args), args.sb3_envs, args.sb3_steps)
        except ImportError:
            raise CliError("--sb3 needs Stable-Baselines3: pip install -e '.[sb3]'") from None
        if args.json:
            print(json.dumps({"world": args.world, "results": rows}))
            return
        for r in rows:
            print(
                f"sb3-ppo through {r['env']:9s} num_envs={r['num_envs']} {r['timesteps']:,} timesteps: "
                f"{r['agent_steps_per_s']:,.0f} agent-steps/s (environment, inference and updates)"
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
            "--preset": args.preset,
            "--config": args.config,
            "--train-config": args.train_config,
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
    overrides = training_overrides(args, task, world_preset(world))
    if args.resume and args.steps is None:  # continue to the run's own budget, not the default one
        overrides["steps"] = run_training(Path(args.out)).steps
    config = train_config(task, overrides, world_preset(world))
    trainer = start_run(Path(args.out), world, config, device(args.device), args.resume)
    written = [
        "metrics.csv",
        "mother.safetensors",
        *train_with_progress(trainer, args.progress_every, args.tensorboard),
    ]
    print(f"trained {trainer.update} updates into {args.out}: {', '.join(written)}")


def training_overrides(args: argparse.Namespace, task: Any, preset: str) -> dict[str, Any]:
    """The training settings `caring train` was given: --train-config's file, then --train-set, then
    the flags, each over the one before. A setting the file gets wrong is one line naming the file
    (the command line's own mistakes are named as ever)."""
    given: dict[str, Any] = parse_sets(args.train_set)
    for key in ("method", "beta_schedule", "steps", "seed"):
        if getattr(args, key) is not None:
            given[key] = getattr(args, key)
    if not args.train_config:
        return given
    overrides = load_config_file(args.train_config) | given
    try:
        train_config(task, overrides, preset)
    except ConfigError as err:
        train_config(task, given, preset)  # without the file it fails too: the command line's mistake
        raise ConfigError(f"--train-config {args.train_config}: {err}") from None
    return overrides


def train_with_progress(
    trainer: Any, every_s: float = PROGRESS_EVERY_S, tensorboard: bool = True
) -> list[str]:
    """Run a trainer to its end, visible while it runs (`caring.progress`: a live line or log lines
    every `every_s` seconds, TensorBoard, plots redrawn at checkpoints), then plot it. -> what it wrote
    besides the trainer's own files, for the closing line."""
    with writing(trainer.out):  # a full disk: one line, the last good checkpoint, resumable
        with Cockpit(trainer, every_s, tensorboard) as cockpit:
            trainer.run(cockpit)
            board = cockpit.board
        written = [p.name for p in plot(trainer.out)]  # learning curves, beta1 and harm
    return written + ([f"{board.directory.name}/ (TensorBoard)"] if board else [])


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
        config = train_config(task, overrides, world_preset(core.config))
        resume = is_run(run)  # an interrupted demo continues where it stopped
        if resume and not started_with(run, core.config, config):
            raise ConfigError(f"{run} holds a run with other settings; delete it or choose another --out")
        trained = mother_label(config)
        print(f"training the default mother into {run}: {trained}, {config.steps:,} agent-steps ...")
        trainer = start_run(run, core.config, config, device(args.device), resume)
        train_with_progress(trainer, args.progress_every, args.tensorboard)
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
    p.add_argument(
        "--preset",
        help="a named world (`caring params WORLD` lists them): its settings, under --config and --set",
    )
    p.add_argument("--config", help="a .json or .toml file of world parameters")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: %(default)s)")


def train_set_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    """--train-set KEY=VALUE (repeatable): training settings over the world's defaults."""
    p.add_argument(
        "--train-set", dest="train_set", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def progress_args(p: argparse.ArgumentParser) -> None:
    """How a training command shows its run while it runs (`caring.progress`)."""
    p.add_argument(
        "--progress-every",
        dest="progress_every",
        type=seconds,
        default=PROGRESS_EVERY_S,
        metavar="SECONDS",
        help="a progress line every SECONDS when the output is not a terminal (and at the first and last "
        "update; 0: every update), and the run's plots redrawn at a checkpoint at most this often "
        "(default: %(default)g)",
    )
    p.add_argument(
        "--no-tensorboard",
        dest="tensorboard",
        action="store_false",
        help="write no TensorBoard event files (default: RUN/tb/ when the tensorboard package is "
        "installed: pip install -e '.[tensorboard]')",
    )


TRAIN_HELP = (
    "Train mothers with PPO and two critics. With no flags the recipe that works: in the nursery RLMF "
    "with adaptive beta1 and M's learned judgement weighted 0.1 against its rules, 12M agent-steps "
    "(about 8 minutes on an idle 2-core CPU; with --seed 11 she saves 92% of her babies in held-out "
    "episodes, the expert 100%); in lava the lava experiment's RLMF settings, 1.5M agent-steps. "
    "`caring params WORLD --train` lists every setting with the world's default."
)


POLICY_HELP = (
    "a scripted policy (nursery: expert, negligent, random, expert-no-*, expert-any, expert-gives-up; "
    "lava: expert, shortcut, random) or a run directory"
)


def add_commands(sub: Any) -> None:
    """The training layer's commands, on an argparse subparsers object."""
    p = sub.add_parser("eval", help="evaluate a policy and print episode metrics")
    world_args(p)
    p.add_argument(
        "--policy",
        required=True,
        help=POLICY_HELP,
    )
    p.add_argument("--episodes", type=EPISODES, default=500)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train mothers (default: the recipe that works)", description=TRAIN_HELP)
    world_args(p)
    p.add_argument("--method", help=f"training method: {', '.join(STREAMS)} (default: rlmf)")
    p.add_argument(
        "--beta-schedule",
        dest="beta_schedule",
        help="constant, linear, exp or adaptive (default: adaptive)",
    )
    p.add_argument("--steps", type=int, help="agent-steps of experience (default: the world's recipe)")
    p.add_argument("--seed", type=SEED, help="random seed (default: 0)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument(
        "--train-config",
        dest="train_config",
        metavar="FILE",
        help="a .toml (or .json) file of training settings, key = value as for --train-set, which "
        "overrides it; see `caring params WORLD --train`",
    )
    train_set_arg(
        p, "override a training setting (repeatable), e.g. worlds=512; see `caring params WORLD --train`"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    progress_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "render",
        help="watch one episode in a window with a panel (or write a GIF: --out, a PNG: --screenshot)",
        description=RENDER_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    world_args(p)
    p.add_argument(
        "--policy",
        required=True,
        help=POLICY_HELP + " (a trained mother: the panel then shows her action probabilities and "
        "V_task, V_mat, and --overlay works)",
    )
    p.add_argument(
        "--seed", type=SEED, default=0, help="which episode: its layout and randomness (default: 0)"
    )
    p.add_argument(
        "--steps",
        type=bounded_int(1, 10**6),
        help="stop after this many steps (default: the whole episode, max_cycles); in the window, the "
        "viewer then closes instead of waiting at the end",
    )
    p.add_argument(
        "--fps",
        type=bounded_int(1, 60),
        default=8,
        help="steps per second: the window's starting speed (+/- change it) and the GIF's",
    )
    p.add_argument(
        "--overlay",
        type=overlay_name,
        help=f"a trained mother's attribution, as a heat map on the cells she sees: {OVERLAY_HELP}",
    )
    p.add_argument("--out", help="write the episode to this .gif instead of opening a window")
    p.add_argument(
        "--every",
        type=bounded_int(1, 1000),
        help="with --out: keep every k-th step (and the last) in the GIF, shown 1/fps each (a long episode "
        "in a small file)",
    )
    p.add_argument(
        "--panel",
        action="store_true",
        help="with --out: the GIF shows the viewer's panel too (default: the world alone, as in the README)",
    )
    p.add_argument("--screenshot", help="write the viewer (grid, panel, overlay) at step --at to this .png")
    p.add_argument("--at", type=bounded_int(0, 10**6), help="the step of --screenshot (default 0)")
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
    p.add_argument(
        "--sb3",
        action="store_true",
        help="instead: Stable-Baselines3 PPO trained on the vector env and, if installed, on SuperSuit's "
        "vector env over the PettingZoo view (one run each, same settings)",
    )
    p.add_argument(
        "--sb3-envs", type=bounded_int(2, 65536), default=64, help="--sb3: agents stepped together"
    )
    p.add_argument(
        "--sb3-steps", type=bounded_int(1024, 10**9), default=32768, help="--sb3: timesteps learned"
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
    progress_args(p)
    p.set_defaults(func=cmd_demo, world="nursery")

    p = sub.add_parser("params", help="list every world (or, with --train, training) setting")
    p.add_argument("world", nargs="?", default="nursery")
    p.add_argument(
        "--train", action="store_true", help="list the training settings, with this world's defaults"
    )
    p.add_argument(
        "--method", choices=tuple(STREAMS), help="with --train: this method's defaults in the world"
    )
    p.add_argument("--preset", help="with --train: the defaults in this named world (e.g. selective)")
    p.set_defaults(func=cmd_params)


def cmd_params(args: argparse.Namespace) -> None:
    task = get_task(args.world)
    if args.train:
        preset = world_preset(build_config(task.config_class, {"preset": args.preset})) if args.preset else ""
        given = {"method": args.method} if args.method else {}
        defaults = dataclasses.asdict(train_config(task, given, preset))
        rows = [(name, kind, defaults[name], meaning) for name, kind, _, meaning in describe(TrainConfig)]
    else:
        rows = describe(task.config_class)
    rows = [
        (name, kind, "''" if default == "" else str(default), meaning)
        for name, kind, default, meaning in rows
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]  # a long default stays aligned
    for name, kind, default, meaning in rows:
        print(f"{name:{widths[0]}s} {kind:{widths[1]}s} {default:{widths[2]}s} {meaning}")


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
    except BrokenPipeError:  # the reader went away (`caring params | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
    except (CliError, ConfigError, ValueError, OSError) as err:
        print(f"caring: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("caring: interrupted", file=sys.stderr)
        return 130
    return 0
