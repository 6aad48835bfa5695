"""`caring bench`: agent-steps per second of a world's PettingZoo view and its batched core, and
(`--train`) of end-to-end training, split into environment, inference, maternal model and update.

An agent-step is one agent (a mother, a walker) stepped with her observation built. Each figure is the
median of `repeats` timed runs after a warm-up; noisy shared machines make single runs meaningless."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import worlds
from caring.episodes import episode_keys
from caring.tasks import task_of


def _median_rate(run, repeats: int) -> float:
    run()  # warm-up
    return statistics.median(run() for _ in range(repeats))


def bench_pettingzoo(config: Any, steps: int, repeats: int, compile: bool = False) -> float:
    """Random play through the PettingZoo API, living agents counted; compile=True steps the view's
    ahead-of-time compiled core (built on the first run, about a minute and a half, then cached)."""
    task = task_of(config)
    env = worlds.make(task.name, compile=compile, **dataclasses.asdict(config))
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
            count += int(batch * core.M)  # the agents' steps (a nursery's orphan slots have no agent)
            state, _ = core.step(state, actions[t])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return count / (time.perf_counter() - start)

    return _median_rate(run, repeats)


def bench_vector(
    config: Any, num_envs: int, steps: int, repeats: int, obs_dtype: str = "uint8", device: str = "cpu"
) -> float:
    """Random actions as a numpy array in, numpy observations out, through `worlds.make_vec`'s
    Gymnasium API (autoresets included); every env index, an agent slot, counts at every step."""
    task = task_of(config)
    params = dataclasses.asdict(config)
    env = worlds.make_vec(task.name, num_envs=num_envs, obs_dtype=obs_dtype, device=device, **params)
    actions = np.random.default_rng(0).integers(0, task.n_actions, size=(steps, env.num_envs))

    def run() -> float:
        env.reset(seed=0)
        start = time.perf_counter()
        for t in range(steps):
            env.step(actions[t])
        return steps * env.num_envs / (time.perf_counter() - start)

    return _median_rate(run, repeats)


def bench_sb3(config: Any, num_envs: int, timesteps: int) -> list[dict]:
    """SB3 PPO (default MlpPolicy, n_steps=128, batch_size=1024, n_epochs=4) trained for `timesteps`
    on `num_envs` agents: through `worlds.sb3.SB3VecWorld`, and, when SuperSuit is installed, through
    the PettingZoo view in SuperSuit's vector env (black death, as dead agents need) -> wall-clock
    agent-steps/s of the whole learn() (environment, inference and updates), one run each."""
    from stable_baselines3 import PPO

    from worlds.sb3 import SB3VecWorld

    task = task_of(config)
    params = dataclasses.asdict(config)
    envs = {"vector": lambda: SB3VecWorld(task.name, num_envs=num_envs, **params)}
    try:
        import supersuit as ss

        def supersuit_env() -> Any:
            view = ss.black_death_v3(worlds.make(task.name, **params))
            agents = len(view.possible_agents)
            markov = ss.pettingzoo_env_to_vec_env_v1(view)
            return ss.concat_vec_envs_v1(markov, num_envs // agents, base_class="stable_baselines3")

        envs["supersuit"] = supersuit_env
    except ImportError:
        pass
    rows = []
    for name, make in envs.items():
        env = make()
        model = PPO("MlpPolicy", env, n_steps=128, batch_size=1024, n_epochs=4, device="cpu")
        start = time.perf_counter()
        model.learn(total_timesteps=timesteps)
        seconds = time.perf_counter() - start
        row = {"mode": "sb3-ppo", "env": name, "num_envs": env.num_envs, "timesteps": model.num_timesteps}
        rows.append(row | {"agent_steps_per_s": model.num_timesteps / seconds})
    return rows


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


def run_bench(
    config: Any, batches: list[int], repeats: int, devices: list[str], compiled: bool = False
) -> dict:
    """Rows of agent-steps/s: the PettingZoo view (and, with `compiled`, its compiled step: built on
    first use, 1-3 minutes), the batched core and the vector env at each batch, on each device."""
    views = [("pettingzoo", False, 300)] + ([("pettingzoo-compiled", True, 3000)] if compiled else [])
    results = [
        {
            "mode": mode,
            "batch": 1,
            "device": "cpu",
            "agent_steps_per_s": bench_pettingzoo(config, steps, repeats, compile=compile),
        }
        for mode, compile, steps in views
    ]
    agents = task_of(config).make_core(config, "cpu").M
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
        for batch in batches:  # one env per agent: num_envs a multiple of the agents per world
            num_envs = max(agents, batch - batch % agents)
            steps = max(20, min(200, 20_000 // num_envs))
            rate = bench_vector(config, num_envs, steps, repeats, device=device)
            results.append({"mode": "vector", "batch": num_envs, "device": device, "agent_steps_per_s": rate})
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


def bench_train(
    config: Any, methods: list[str], updates: int, device: str, overrides: dict[str, Any] | None = None
) -> list[dict]:
    """Train each method for 1 + `updates` updates in a scratch directory (the world's default training
    settings under `overrides`; a small maternal model fit) and report the medians of the timed
    updates, the warm-up excluded, beside the ceiling (`ceiling`) timed once after each update of the
    same run, so that a noisy machine slows both alike and their ratio holds."""
    import csv
    import tempfile
    from pathlib import Path

    from caring.config import train_config, world_preset
    from caring.train import TIMED, start_run

    task = task_of(config)
    defaults = train_config(task, overrides, world_preset(config))
    per_update = defaults.worlds * task.make_core(config, "cpu").M * defaults.rollout
    rows = []
    for method in methods:
        with tempfile.TemporaryDirectory() as tmp:
            settings = {**(overrides or {}), "method": method, "demo_episodes": 8}
            train = train_config(task, settings | {"steps": (1 + updates) * per_update}, world_preset(config))
            trainer = start_run(Path(tmp), config, train, device, resume=False, log=lambda m: None)
            ceilings = _train_beside_ceiling(trainer)
            timed = list(csv.DictReader((Path(tmp) / "speed.csv").open()))[1:]
        speed = statistics.median(float(r["agent_steps_per_s"]) for r in timed)
        top = statistics.median(ceilings[1:])
        row = {
            "mode": "train",
            "method": method,
            "device": device,
            "worlds": train.worlds,
            "rollout": train.rollout,
            "updates": updates,
            "agent_steps_per_s": speed,
            "ceiling_agent_steps_per_s": top,
            "share_of_ceiling": speed / top,
        }
        row |= {k: statistics.median(float(r[k]) for r in timed) for k in TIMED}
        rows.append(row)
    return rows


def _train_beside_ceiling(trainer: Any) -> list[float]:
    """Run the trainer to its end, timing the ceiling after every update: their agent-steps/s."""
    ceiling = ceiling_pass(trainer)
    ceilings: list[float] = []
    trainer.run(lambda *progress: ceilings.append(ceiling()))
    return ceilings


def ceiling_pass(trainer: Any) -> Callable[[], float]:
    """A timer of what no world can spare the trainer: a rollout's inference (T forward passes and
    samples over its N agents) and the PPO update on it, on one real rollout collected here (its
    observations, live steps and rewards: the work an update of training does). Each call returns its
    agent-steps/s; training at that rate would mean the world, its bookkeeping and the second stream's
    payments cost nothing."""
    from caring import ppo

    c, device, net = trainer.config, trainer.device, trainer.net
    T, N = c.rollout, c.worlds * trainer.core.M
    buf, _, _ = trainer.collect_rollout()
    next_obs = trainer.mothers(trainer.obs).reshape(N, -1)
    gen = torch.Generator(device=device).manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None

    def once() -> float:
        sync()
        start = time.perf_counter()
        with torch.no_grad():
            for t in range(T):
                logits, _, _ = net(buf["obs"][t])
                torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
        ppo.update(net, trainer.opt, buf, next_obs, 0.5, c, gen, trainer.stream)
        sync()
        return T * N / (time.perf_counter() - start)

    return once
