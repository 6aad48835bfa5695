"""Train mothers: collect a rollout → the method's stream pays → β₁ → PPO update → log → checkpoint.

Every method is the same PPO with two critics (`caring.ppo`) and differs only in its second stream
(`caring.streams`: what it pays per step, its β₁ schedule, what it prepares and checkpoints). All
mothers of all worlds share one network. `wean_steps` continues any run with β₁ = 0 after its schedule
ends: does the care outlast the signal? (The mother as she was when it ended is kept as a snapshot.)

A run directory holds config.json, mother.safetensors, the last checkpoint (weights, optimiser,
sampler, the whole batched world and the stream's state, so `--resume` continues exactly), metrics.csv
(one deterministic row per update), speed.csv (wall-clock, kept apart for that reason), and whatever
the stream keeps (RLMF: its maternal model). Reading run directories is `caring.runs`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from caring import checkpoints, ppo
from caring.config import warmup_settings
from caring.episodes import episode_keys
from caring.files import check_tensors, fsync_dir, remove_temporaries, run_lock, write_json
from caring.protocols import Transition
from caring.runs import (
    load_mother,
    mother_net,
    run_config,
    run_training,
    run_world,
    scheduled_updates,
    updates_total,
)
from caring.streams import Context, get_stream
from caring.tasks import task_of
from worlds import rng
from worlds.config import ConfigError, build_config

TIMED = ("env_s", "inference_s", "stream_s", "update_s")  # speed.csv: seconds per part of an update
METRIC_COLUMNS = (  # metrics.csv: these, then the task's train_columns, the stream's, then LOSS_COLUMNS
    "update",
    "agent_steps",
    "beta1",
    "harm_rate",
    "task_reward",
    "mat_reward",
    "episodes_done",
)
SPEED_COLUMNS = ("update", "agent_steps_per_s", "rollout_s", *TIMED)
LOSS_COLUMNS = ("policy_loss", "value_task_loss", "value_mat_loss", "entropy", "approx_kl", "clip_frac")


class Stopwatch:
    """Seconds spent per named part of an update: `with clock("env_s"): ...` adds the block's time."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(TIMED, 0.0)

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - start


class Trainer:
    """Holds everything a run needs; `run()` trains to `config.steps` (+ `wean_steps`), checkpointing
    as it goes. `world` is a world's config (NurseryConfig, LavaConfig); its type picks the task."""

    def __init__(self, out: Path, world: Any, config: Any, device: str = "cpu"):
        self.out, self.world, self.config, self.device = Path(out), world, config, torch.device(device)
        self.task = task_of(world)
        self.task.check_training_world(world)
        stream_class = get_stream(config.method)
        for need in stream_class.needs:
            if not hasattr(self.task, need):
                raise ConfigError(f"method {config.method} needs a baby; the {self.task.name} world has none")
        self.core = self.task.make_core(world, device)
        self.warmup = self._warmup_world(config)
        if self.warmup is not None:
            self.core = self.task.make_core(self.warmup, device)
        torch.manual_seed(config.seed)
        self.net = mother_net(self.core, self.task.n_actions, config).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr, eps=1e-5)
        self.gen = torch.Generator(device=self.device).manual_seed(config.seed)
        self.update = 0
        self.clock = Stopwatch()
        self.state, self.obs = self.core.reset(episode_keys(config.seed, config.worlds, self.device))
        self.tally = self.task.start_episode(self.state)  # running per-world episode outcomes
        self.stream = stream_class(Context(config, self.task, self.core, self.net, self.out, self.device))
        self.columns = (*METRIC_COLUMNS, *self.task.train_columns, *self.stream.columns, *LOSS_COLUMNS)

    def start_from(self, run: Path) -> None:
        """The network's weights from another run's trained mother (`init_from`), checked name by name,
        shape by shape: only a fresh run starts from them (a resumed one has its own checkpoint). A run
        still training is refused, held by its trainer or short of its own budget: its
        mother.safetensors is only its latest checkpoint's. (A run whose budget a sweep extended and
        that was then stopped short cannot be told from a finished one here.)"""
        donor = load_mother(run, self.core, self.task).state_dict()
        try:
            with run_lock(run):
                pass
        except ConfigError:
            raise ConfigError(f"init_from: {run} is still training; let it finish first") from None
        trained = checkpoints.committed_update(run)  # None: kept without her checkpoint (shipped ones)
        if trained is not None:
            _, world = run_world(run)
            total = updates_total(run_training(run), self.task.make_core(world, "cpu").M)
            if trained < total:
                raise ConfigError(
                    f"init_from: {run} has trained {trained} of its {total} updates; let it finish first"
                )
        check_tensors(f"{run}/mother.safetensors", "this run's network", donor, self.net.state_dict())
        self.net.load_state_dict(donor)

    # ------------------------------------------------------------------ a curriculum's worlds
    def _warmup_world(self, config: Any) -> Any:
        """The warm-up stage's world (`warmup_world` applied to the run's), or None without one. It must
        give the network the same observations and the same mothers, so one mother trains in both."""
        settings = warmup_settings(config)
        if not settings:
            return None
        try:
            warmup = build_config(type(self.world), {**dataclasses.asdict(self.world), **settings})
        except ConfigError as err:
            raise ConfigError(f"warmup_world: {err}") from None
        self.task.check_training_world(warmup)
        final, first = self.core, self.task.make_core(warmup, "cpu")
        for name, what in (("obs_dim", "observation size"), ("M", "number of mothers")):
            if getattr(first, name) != getattr(final, name):
                raise ConfigError(
                    f"warmup_world={config.warmup_world!r} changes the {what} "
                    f"({getattr(first, name)} vs {getattr(final, name)}); one mother cannot train in both"
                )
        return warmup

    @property
    def warmup_updates(self) -> int:
        """Updates spent in the warm-up world (0 without one)."""
        return -(-self.config.warmup_steps // self.per_update) if self.warmup is not None else 0

    def world_at(self, update: int) -> Any:
        """The world the run trains in after `update` updates: the warm-up's, then its own."""
        return self.warmup if update < self.warmup_updates else self.world

    def enter_stage(self, update: int, stagger: bool = True) -> None:
        """Make the worlds those of `update`'s stage: on a change of stage every world starts a fresh
        episode of the new one (keys drawn from the old ones, so a run stays deterministic), staggered
        (`stagger_episodes`) unless a checkpoint is about to replace them."""
        world = self.world_at(update)
        if world == self.core.config:
            return
        self.core = self.task.make_core(world, self.device)
        self.state, self.obs = self.core.reset(rng.next_key(self.state.key))
        self.tally = self.task.start_episode(self.state)
        self.stream.ctx = dataclasses.replace(self.stream.ctx, core=self.core)
        if stagger:
            self.stagger_episodes()

    @torch.no_grad()
    def stagger_episodes(self) -> None:
        """Spread fresh episodes over their phases: world b first plays k_b steps (uniform in [0,
        max_cycles)) with the current mother, not trained on, so that an update's rollout does not see
        every world at the same moment of its episode (as after a reset of all worlds together, which
        only deaths would undo: a stage of competent mothers stays in step for millions of agent-steps).
        A world whose episode ends meanwhile plays on into its next one."""
        core, task, B, M = self.core, self.task, self.config.worlds, self.core.M
        steps = torch.randint(0, core.config.max_cycles, (B,), generator=self.gen, device=self.device)
        for t in range(core.config.max_cycles):
            playing = steps > t  # (B,)
            if not bool(playing.any()):
                break
            logits, _, _ = self.net(self.mothers(self.obs).reshape(B * M, -1))
            action = torch.multinomial(torch.softmax(logits, -1), 1, generator=self.gen)[:, 0]
            state, out = core.step(self.state, F.pad(action.view(B, M), (0, core.A - M)))
            tally = task.track(self.tally, self.state, out)
            self.tally = {k: torch.where(playing, tally[k], v) for k, v in self.tally.items()}
            self.state = self.state.where(playing, state)
            self.obs = torch.where(playing[:, None, None], out.obs, self.obs)
            ended = playing & task.ended(state, out)
            if bool(ended.any()):
                self.state, self.obs = core.reset_done(self.state, self.obs, ended)
                fresh = task.start_episode(self.state)
                self.tally = {k: torch.where(ended, fresh[k], v) for k, v in self.tally.items()}

    # ------------------------------------------------------------------ one update
    def collect_rollout(self) -> tuple[dict[str, torch.Tensor], dict[str, float], dict[str, float]]:
        """T steps of every world, auto-resetting finished ones. -> (buffer (T, N, ...) with what the
        stream recorded, harm counts, outcomes summed over the episodes that ended).

        Everything stays on the device until the rollout ends: tallies are tensors, and each world's next
        episode is made ready in one batched reset before the first step, so a world that finishes steps
        into it by a select, not a reset of its own. Only a world finishing a second episode within one
        rollout is reset on the spot (one boolean read per step tells whether any did). Rows are the
        mothers' slots (the first M of A): an orphan's slot has no mother, so no network row."""
        c, core, task, clock = self.config, self.core, self.task, self.clock
        B, A, M, T = c.worlds, core.A, core.M, c.rollout
        N = B * M
        buf = ppo.storage(T, N, core.obs_dim, self.device)
        with clock("env_s"):
            ready_state, ready_obs = core.reset(rng.next_key(self.state.key))  # each world's next episode
            used = torch.zeros(B, dtype=torch.bool, device=self.device)  # worlds that stepped into theirs
            counts = torch.zeros(3, dtype=torch.int64, device=self.device)  # harm events, exposed, episodes
            sums: dict[str, torch.Tensor] = {}
        for t in range(T):
            with clock("inference_s"):
                obs = self.mothers(self.obs).reshape(N, -1)
                with torch.no_grad():
                    logits, v_task, v_mat = self.net(obs)
                    probs = torch.softmax(logits, -1)
                    action = torch.multinomial(probs, 1, generator=self.gen)[:, 0]
            with clock("env_s"):
                before = self.state
                live = self.mothers(task.acting(before)).reshape(N)  # mothers acting in this step
                actions = F.pad(action.view(B, M), (0, A - M))  # (B, A): orphan slots STAY (0)
                state, out = core.step(before, actions)
            buf["obs"][t], buf["action"][t], buf["v_task"][t], buf["v_mat"][t] = obs, action, v_task, v_mat
            buf["logp"][t] = torch.log(probs.gather(1, action[:, None])[:, 0] + 1e-12)
            buf["r_task"][t] = self.mothers(out.reward).reshape(N) * c.reward_scale
            with clock("stream_s"):
                recorded = self.stream.record(Transition(before, self.obs, actions, state, out))
            for name, value in recorded.items():
                if name not in buf:
                    buf[name] = torch.empty(T, N, *value.shape[2:], dtype=value.dtype, device=self.device)
                buf[name][t] = self.mothers(value).reshape(N, *value.shape[2:])
            with clock("env_s"):
                harmed, exposed = task.harm(before, out)  # (B, A) each
                ended = task.ended(state, out)  # (B,)
                done = out.terminated | ended[:, None]
                buf["done"][t], buf["live"][t] = self.mothers(done).reshape(N).float(), live.float()
                counts += torch.stack([(harmed & exposed).sum(), exposed.sum(), ended.sum()])
                self.tally = task.track(self.tally, before, out)
                for name, value in task.outcome(self.tally, state).items():
                    sums[name] = sums.get(name, 0.0) + torch.where(ended, value.double(), 0.0).sum()
                first, again = ended & ~used, ended & used
                state = state.where(first, ready_state)
                next_obs = torch.where(first[:, None, None], ready_obs, out.obs)
                if bool(again.any()):  # its ready episode is spent: reset it the slow way
                    state, next_obs = core.reset_done(state, next_obs, again)
                used |= ended
                fresh = task.start_episode(state)
                self.tally = {k: torch.where(ended, fresh[k], v) for k, v in self.tally.items()}
                self.state, self.obs = state, next_obs
        harm, exposed_steps, episodes = counts.tolist()  # the rollout's one read of its tallies
        stats = {"harm": float(harm), "exposed": float(exposed_steps), "episodes": float(episodes)}
        return buf, stats, {name: float(value) for name, value in sums.items()}

    def mothers(self, x: torch.Tensor) -> torch.Tensor:
        """(B, A, ...) per slot -> (B, M, ...) the mothers' slots (a view; x itself without orphans)."""
        return x[:, : self.core.M]

    # ------------------------------------------------------------------ the loop
    @property
    def per_update(self) -> int:
        return self.config.worlds * self.core.M * self.config.rollout  # mothers' steps (orphans act not)

    @property
    def updates_weaning_starts(self) -> int:
        """Updates of the scheduled phase; β₁ is 0 from here on."""
        return scheduled_updates(self.config, self.core.M)

    @property
    def updates_total(self) -> int:
        return updates_total(self.config, self.core.M)

    def run(self, progress: Callable[[int, int, dict, float], None] | None = None) -> None:
        with run_lock(self.out):
            self._train(progress)

    def _train(self, progress: Callable[[int, int, dict, float], None] | None) -> None:
        c, per_update, stream = self.config, self.per_update, self.stream
        if c.snapshot_every and self.update == 0:
            checkpoints.save_snapshot(self)  # the untrained mother: where every curve over training starts
        while self.update < self.updates_total:
            start = time.perf_counter()
            buf, stats, outcomes = self.collect_rollout()
            rollout_s = time.perf_counter() - start
            harm_rate = stats["harm"] / max(1.0, stats["exposed"])
            scheduled = self.update < self.updates_weaning_starts
            beta = stream.schedule.step(self.update, harm_rate) if scheduled else 0.0  # weaned: gone
            stream.after_rollout(buf, self.update, self.updates_weaning_starts)
            next_obs = self.mothers(self.obs).reshape(c.worlds * self.core.M, -1)
            if c.lr_anneal:  # from the update count alone, so a resumed run anneals as it would have
                for group in self.opt.param_groups:
                    group["lr"] = c.lr * (1.0 - self.update / self.updates_total)
            losses = ppo.update(self.net, self.opt, buf, next_obs, beta, c, self.gen, stream)
            self.clock.seconds["update_s"] = time.perf_counter() - start - rollout_s
            self.update += 1
            row = {
                "update": self.update,
                "agent_steps": self.update * per_update,
                "beta1": beta,
                "harm_rate": harm_rate,
                "task_reward": float(buf["r_task"].mean() / c.reward_scale),
                "mat_reward": float(buf["r_mat"].mean()),
                "episodes_done": int(stats["episodes"]),
                **self.task.train_metrics(outcomes, stats["episodes"]),
                **stream.logs(),
                **losses,
            }
            checkpoints.append_row(self.out / "metrics.csv", self.columns, row)
            elapsed = time.perf_counter() - start
            speed = {"update": self.update, "agent_steps_per_s": per_update / elapsed, "rollout_s": rollout_s}
            checkpoints.append_row(self.out / "speed.csv", SPEED_COLUMNS, speed | self.clock.seconds)
            self.clock = Stopwatch()
            self.enter_stage(self.update)  # the warm-up's last update: its checkpoint holds the new worlds
            weaning = c.wean_steps and self.update == self.updates_weaning_starts  # the mother before it
            if weaning or (c.snapshot_every and self.update % c.snapshot_every == 0):
                checkpoints.save_snapshot(self)
            if self.update % c.checkpoint_every == 0 or self.update == self.updates_total:
                self.save_checkpoint()
            if progress is not None:
                progress(self.update, self.updates_total, row, per_update / elapsed)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        """Commit everything needed to continue exactly (weights, optimiser, sampler, world, bookkeeping,
        the logs' lengths) by one atomic rename, then export the mother (`caring.checkpoints`)."""
        checkpoints.save(self)

    def load_checkpoint(self) -> None:
        """Continue from the last committed checkpoint, or from the start if the run has none yet."""
        checkpoints.restore(self)


def start_run(
    out: Path, world: Any, config: Any, device: str, resume: bool, log: Callable[[str], None] = print
) -> Trainer:
    """A fresh run (refusing to overwrite an existing one) or a resumed one (refusing another world's
    run). `world` is a world's config; resuming reads the run's own world and settings instead (with
    this `config`'s step budget) and continues from whatever a kill or a full disk left: its last
    checkpoint, or with none yet (a run with only its config.json) the start, so it ends as the
    uninterrupted run would. The stream prepares either way (RLMF: fits M, or loads the one it fitted).
    An OSError while writing is one line naming the file and the last good checkpoint."""
    out = Path(out)
    config_path = out / "config.json"
    with checkpoints.writing(out):
        if resume:
            previous = run_config(out)
            with run_lock(out):
                return _resume(out, previous, world, config, device, log)
        if config_path.exists():
            raise ConfigError(
                f"{out} already holds a run; use --resume to continue it or choose another --out"
            )
        stray = [name for name in checkpoints.RUN_FILES if (out / name).exists()]
        if stray:
            raise ConfigError(
                f"{out} holds {stray[0]} but no config.json: not a run this can continue; "
                "delete it or choose another --out"
            )
        trainer = Trainer(out, world, config, device)  # checks the world before anything is written
        if config.init_from:
            trainer.start_from(Path(config.init_from))
        out.mkdir(parents=True, exist_ok=True)
        fsync_dir(out.parent)  # the new run directory's name survives a power cut with its files
        with run_lock(out):
            remove_temporaries(out)
            saved = {
                "world_name": trainer.task.name,
                "world": dataclasses.asdict(world),
                "train": dataclasses.asdict(config),
            }
            write_json(config_path, saved)
            trainer.stream.prepare(log)
        return trainer


def _resume(
    out: Path, previous: dict, world: Any, config: Any, device: str, log: Callable[[str], None]
) -> Trainer:
    """The trainer of the run in `out` (its own world and settings, this `config`'s step budget), at its
    last checkpoint."""
    name, world_saved = run_world(out, previous)
    if name != task_of(world).name:
        raise ConfigError(
            f"{out} holds a {name} run, not a {task_of(world).name} one; "
            f"resume it with `caring train {name} --out {out} --resume`"
        )
    config = dataclasses.replace(run_training(out, previous), steps=config.steps)
    trainer = Trainer(out, world_saved, config, device)
    trainer.stream.prepare(log)
    trainer.load_checkpoint()
    remove_temporaries(out)
    return trainer
