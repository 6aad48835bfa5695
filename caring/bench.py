"""`caring bench`: agent-steps per second of a world's PettingZoo view and its batched core, and
(`--train`) of end-to-end training, split into environment, inference, maternal model and update.

An agent-step is one agent (a mother, a walker) stepped with her observation built. Each figure is the
median of `repeats` timed runs after a warm-up; noisy shared machines make single runs meaningless."""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import numpy as np
import torch

import worlds
from caring.episodes import episode_keys
from caring.tasks import task_of


def _median_rate(run, repeats: int) -> float:
    run()  # warm-up
    return statistics.median(run() for _ in range(repeats))


def bench_pettingzoo(config: Any, steps: int, repeats: int) -> float:
    task = task_of(config)
    env = worlds.make(task.name, **dataclasses.asdict(config))
    rng = np.random.default_rng(0)

    def run() -> float:
        env.reset(seed=0)
        count, start = 0, time.perf_counter()
        for _ in range(steps):
            if not env.agents:
                env.reset()
            actions = {a: int(rng.integers(task.n_actions)) for a in env.agents}
            env.step(actions)
            count += len(actions)
        return count / (time.perf_counter() - start)

    return _median_rate(run, repeats)


@torch.inference_mode()
def bench_batched(config: Any, batch: int, steps: int, repeats: int, device: str) -> float:
    task = task_of(config)
    core = task.make_core(config, device)
    gen = torch.Generator(device=device).manual_seed(0)

    def run() -> float:
        state, _ = core.reset(episode_keys(0, batch, device))
        actions = torch.randint(0, task.n_actions, (steps, batch, core.A), generator=gen, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        count, start = 0, time.perf_counter()
        for t in range(steps):
            count += int(batch * core.A)  # every agent slot is stepped and observed
            state, _ = core.step(state, actions[t])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return count / (time.perf_counter() - start)

    return _median_rate(run, repeats)


@torch.inference_mode()
def step_breakdown(config: Any, batch: int, repeats: int, device: str) -> dict:
    """Tensor operations per step (what dominates at small B) and the share of a step spent building
    observations (what dominates at large B), medians over `repeats` timings."""
    core = task_of(config).make_core(config, device)
    state, _ = core.reset(episode_keys(0, batch, device))
    actions = torch.zeros(batch, core.A, dtype=torch.int64, device=device)
    with torch.profiler.profile() as prof:
        core.step(state, actions)
    ops = sum(1 for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::"))

    def timed(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    step_s = timed(lambda: core.step(state, actions))
    observe_s = timed(lambda: core.observe(state))
    return {"ops_per_step": ops, "step_ms": 1e3 * step_s, "observe_share": observe_s / step_s}


def run_bench(config: Any, batches: list[int], repeats: int, devices: list[str]) -> dict:
    results = [
        {
            "mode": "pettingzoo",
            "batch": 1,
            "device": "cpu",
            "agent_steps_per_s": bench_pettingzoo(config, 300, repeats),
        }
    ]
    for device in devices:
        for batch in batches:
            steps = max(20, min(200, 20_000 // batch))
            results.append(
                {
                    "mode": "batched",
                    "batch": batch,
                    "device": device,
                    "agent_steps_per_s": bench_batched(config, batch, steps, repeats, device),
                    **step_breakdown(config, batch, repeats, device),
                }
            )
    task = task_of(config)
    state, _ = task.make_core(config, "cpu").reset(episode_keys(0, 1))
    return {
        "world": task.name,
        "device": ",".join(devices),
        "torch_threads": torch.get_num_threads(),
        "repeats": repeats,
        "state_bytes_per_world": state.nbytes_per_world(),
        "results": results,
    }


def bench_train(config: Any, methods: list[str], updates: int, device: str) -> list[dict]:
    """Train each method for 1 + `updates` updates in a scratch directory (the world's default training
    settings; a small maternal model fit) and report the medians of the timed updates, the warm-up
    excluded."""
    import csv
    import tempfile
    from pathlib import Path

    from caring.config import train_config
    from caring.train import TIMED, start_run

    task = task_of(config)
    defaults = train_config(task)
    per_update = defaults.worlds * task.make_core(config, "cpu").A * defaults.rollout
    rows = []
    for method in methods:
        with tempfile.TemporaryDirectory() as tmp:
            overrides = {"method": method, "demo_episodes": 8, "steps": (1 + updates) * per_update}
            train = train_config(task, overrides)
            start_run(Path(tmp), config, train, device, resume=False, log=lambda m: None).run()
            timed = list(csv.DictReader((Path(tmp) / "speed.csv").open()))[1:]
        row = {
            "mode": "train",
            "method": method,
            "device": device,
            "worlds": train.worlds,
            "updates": updates,
            "agent_steps_per_s": statistics.median(float(r["agent_steps_per_s"]) for r in timed),
        }
        row |= {k: statistics.median(float(r[k]) for r in timed) for k in TIMED}
        rows.append(row)
    return rows
