"""Train mothers with PPO and two critics, with or without RLMF (seed 000, Algorithm 1), on a batched
world (the nursery or lava; what is world-specific comes from its `caring.tasks` task). One file, top
to bottom: config, maternal model, rollout, advantages, update, checkpoints.

Methods differ only in the second reward stream (its own critic and GAE; the policy sees
A_total = (1 − β₁)·A_task + β₁·A_second) or in an extra loss:
- `ppo`: β₁ = 0, the plain-RL baseline (the second critic is still trained, never used);
- `rlmf`: the maternal model M's reward, β₁ from a weaning schedule (seed 000);
- `rlhf` / `rlaif` (seed 004): a Bradley-Terry reward ensemble fitted to labels bought from a noisy
  synthetic annotator or a written constitution (`caring.preferences`), β₁ from the same schedules;
- `ppo-lagrangian`: minus the harm cost, β₁ = λ/(1+λ) with λ from dual ascent on the harm rate against
  `cost_limit` (standard safe RL);
- `choice` (Franzmeyer et al. 2022): her baby's choice, the cells it could reach in `choice_steps`
  moves, constant β₁ = `beta0`;
- `kindness` (seed 002): her own value head evaluated on her baby's situation with the names switched
  (the task's `perspective`), constant β₁ = `beta0`;
- `tom` (seed 003): PPO plus a head on the shared trunk that predicts the baby's next move, trained
  only by its cross-entropy, weighted `tom_coef`; its accuracy is logged.
All mothers share one network.
`wean_steps` continues any run with β₁ = 0 after its schedule ends: does the care outlast the signal?
A run directory holds config.json, the maternal model and the mother as safetensors (+ JSON), the last
checkpoint (weights, optimiser, sampler and the whole batched world, so `--resume` continues exactly),
metrics.csv (one deterministic row per update) and speed.csv (wall-clock, kept apart for that reason).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from caring.advantages import combined_advantage, gae
from caring.evaluate import episode_keys
from caring.files import load_optimizer, optimizer_tensors
from caring.maternal import (
    MaternalModel,
    Transitions,
    balanced_accuracy,
    collect,
    maternal_reward,
    split_heldout,
    train_maternal,
)
from caring.networks import MotherNet
from caring.preferences import FACTS, PreferenceLearner
from caring.schedules import SCHEDULES, BetaSchedule
from caring.tasks import get_task, task_of
from worlds.config import ConfigError, build_config, param, validate_fields

METHODS = ("ppo", "rlmf", "ppo-lagrangian", "choice", "tom", "rlhf", "rlaif", "kindness")
PREFERENCE_METHODS = ("rlhf", "rlaif")
BABY_METHODS = {  # method -> what the task must offer
    "choice": "choice",
    "tom": "baby_moves",
    "rlhf": "care_facts",
    "rlaif": "care_facts",
    "kindness": "perspective",
}


@dataclass(frozen=True)
class TrainConfig:
    method: str = param(
        "rlmf", "ppo (beta1 = 0), rlmf, ppo-lagrangian, choice, tom, rlhf, rlaif or kindness", choices=METHODS
    )
    beta_schedule: str = param("adaptive", "how beta1 is weaned", choices=SCHEDULES)
    beta0: float = param(
        0.5, "beta1 at the start (1.0 leaves no task signal to learn self-care from)", 0.0, 1.0
    )
    beta_min: float = param(0.05, "beta1's floor", 0.0, 1.0)
    harm_threshold: float = param(
        0.02,
        "adaptive: harm rate an update may have and count as clean (per baby-step, per walker-step)",
        0.0,
        1.0,
    )
    cost_limit: float = param(
        0.005, "ppo-lagrangian: harm rate allowed (harm events per baby-step, per walker-step)", 1e-6, 1.0
    )
    lagrange_lr: float = param(
        0.05, "ppo-lagrangian: multiplier step per update per unit of relative cost violation", 0.0, 100.0
    )
    choice_steps: int = param(4, "choice: moves within which the baby's reachable cells count", 1, 64)
    tom_coef: float = param(1.0, "tom: weight of the baby-move prediction loss", 0.0, 100.0)
    labels: int = param(2000, "rlhf/rlaif: preference labels bought over the run (the budget)", 1, 10**6)
    segment_length: int = param(16, "rlhf/rlaif: steps per compared segment", 1, 1000)
    reward_models: int = param(3, "rlhf/rlaif: members of the reward-model ensemble", 1, 64)
    query: str = param(
        "disagreement",
        "rlhf/rlaif: which pairs are labelled: the ensemble's most disputed of 4x as many, or random",
        choices=("disagreement", "random"),
    )
    reward_model_steps: int = param(16, "rlhf/rlaif: reward-model Adam steps per update", 0, 10000)
    annotator_temperature: float = param(
        1.0, "rlhf: Boltzmann temperature of the annotator over care-score gaps (0: rational)", 0.0, 1000.0
    )
    annotator_error: float = param(0.1, "rlhf: chance the annotator's label is flipped", 0.0, 0.5)
    beta_horizon: int = param(100, "linear schedule: updates to reach beta_min", 1, 10**7)
    beta_kappa: float = param(0.03, "exp schedule: decay per update", 0.0, 10.0)
    steps: int = param(2_000_000, "agent-steps of experience to train on", 1, 10**11)
    wean_steps: int = param(
        0, "agent-steps trained after `steps` with beta1 = 0 (is the habit kept once M is gone?)", 0, 10**11
    )
    seed: int = param(0, "random seed", 0, 2**62)
    worlds: int = param(256, "worlds stepped together", 1, 65536)
    rollout: int = param(64, "steps per world per update", 1, 10000)
    epochs: int = param(4, "PPO epochs per update", 1, 100)
    minibatches: int = param(4, "minibatches per epoch", 1, 1024)
    lr: float = param(3e-4, "Adam learning rate", 1e-7, 1.0)
    gamma: float = param(0.99, "discount", 0.0, 1.0)
    lam: float = param(0.95, "GAE lambda", 0.0, 1.0)
    clip: float = param(0.2, "PPO clip range", 0.0, 1.0)
    ent_coef: float = param(0.02, "entropy bonus", 0.0, 1.0)
    vf_coef: float = param(0.5, "value loss weight (each critic)", 0.0, 100.0)
    max_grad_norm: float = param(0.5, "gradient clipping", 0.0, 100.0)
    hidden: int = param(128, "hidden units per trunk layer", 8, 4096)
    reward_scale: float = param(0.1, "task reward multiplier", 1e-6, 100.0)
    mat_penalty: float = param(5.0, "maternal rule penalty for a preventable catastrophe", 0.0, 1000.0)
    mat_learned_weight: float = param(
        1.0, "weight of M's learned judgement in r_mat (0: the rules alone)", 0.0, 100.0
    )
    demo_episodes: int = param(
        60,
        "expert episodes for the maternal model (the task sets the other demonstrations' multiples)",
        1,
        100000,
    )
    checkpoint_every: int = param(10, "updates between checkpoints", 1, 10**6)

    def validate(self) -> None:
        validate_fields(self)
        if self.beta_min > self.beta0:
            raise ConfigError(f"beta_min={self.beta_min} exceeds beta0={self.beta0}")
        if (self.worlds * self.rollout) % self.minibatches:
            raise ConfigError(f"worlds*rollout={self.worlds * self.rollout} is not divisible by minibatches")
        if self.method in PREFERENCE_METHODS and self.segment_length > self.rollout:
            raise ConfigError(f"segment_length={self.segment_length} exceeds rollout={self.rollout}")
        if self.query == "disagreement" and self.reward_models < 2:
            raise ConfigError("query=disagreement needs reward_models >= 2 (one model cannot disagree)")

    def schedule(self) -> BetaSchedule:
        kind = {
            "ppo": "constant",
            "tom": "constant",
            "ppo-lagrangian": "lagrangian",
            "choice": "constant",
            "kindness": "constant",
        }
        kind = kind.get(self.method, self.beta_schedule)
        beta0 = 0.0 if self.method in ("ppo", "tom") else self.beta0
        return BetaSchedule(
            kind=kind,
            beta0=beta0,
            beta_min=min(self.beta_min, beta0),
            horizon=self.beta_horizon,
            kappa=self.beta_kappa,
            harm_threshold=self.harm_threshold,
            cost_limit=self.cost_limit,
            lagrange_lr=self.lagrange_lr,
        )


TIMED = ("env_s", "inference_s", "maternal_s", "update_s")

METRIC_COLUMNS = (  # metrics.csv: these, then the task's train_columns, then LOSS_COLUMNS
    "update",
    "agent_steps",
    "beta1",
    "harm_rate",
    "task_reward",
    "mat_reward",
    "episodes_done",
)
PREFERENCE_COLUMNS = ("labels", "reward_model_loss", "reward_model_accuracy", "label_truth")
LOSS_COLUMNS = ("policy_loss", "value_task_loss", "value_mat_loss", "entropy", "approx_kl", "clip_frac")


class Trainer:
    """Holds everything a run needs; `run()` trains to `config.steps` (+ `wean_steps`), checkpointing
    as it goes. `world` is a world's config (NurseryConfig, LavaConfig); its type picks the task."""

    def __init__(self, out: Path, world: Any, config: TrainConfig, device: str = "cpu"):
        self.out, self.world, self.config, self.device = Path(out), world, config, torch.device(device)
        self.task = task_of(world)
        self.task.check_training_world(world)
        needs = BABY_METHODS.get(config.method)
        if needs and not hasattr(self.task, needs):
            raise ConfigError(f"method {config.method} needs a baby; the {self.task.name} world has none")
        self.core = self.task.make_core(world, device)
        torch.manual_seed(config.seed)
        tom = config.method == "tom"
        self.net = MotherNet(self.core.obs_dim, self.task.n_actions, config.hidden, tom).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr, eps=1e-5)
        self.gen = torch.Generator(device=self.device).manual_seed(config.seed)
        self.schedule = config.schedule()
        self.maternal: MaternalModel | None = None
        self.update = 0
        self.timing = dict.fromkeys(TIMED, 0.0)  # seconds per part of the current update (speed.csv)
        self.state, self.obs = self.core.reset(episode_keys(config.seed, config.worlds, self.device))
        self.tally = self.task.start_episode(self.state)  # running per-world episode outcomes
        self.preferences: PreferenceLearner | None = None
        if config.method in PREFERENCE_METHODS:
            self.preferences = PreferenceLearner(
                config.method,
                self.core.obs_dim,
                self.task.n_actions,
                config.labels,
                config.segment_length,
                config.reward_models,
                config.query,
                config.annotator_temperature,
                config.annotator_error,
                config.seed + 2000,
                self.device,
            )
        extra = {
            "ppo-lagrangian": ("lagrange_multiplier",),
            "tom": ("tom_loss", "tom_accuracy"),
            **dict.fromkeys(PREFERENCE_METHODS, PREFERENCE_COLUMNS),
        }
        extra = extra.get(config.method, ())
        self.columns = (*METRIC_COLUMNS, *self.task.train_columns, *extra, *LOSS_COLUMNS)

    # ------------------------------------------------------------------ maternal model
    def fit_maternal(self) -> dict:
        c, core, task = self.config, self.core, self.task
        demos = task.demonstrations(core, c.demo_episodes)  # name: (policy, episodes, label)
        parts = {
            name: collect(task, core, policy, n, c.seed + 1000 + i, label)
            for i, (name, (policy, n, label)) in enumerate(demos.items())
        }
        self.maternal, report = train_maternal(
            Transitions.cat(list(parts.values())), task.n_actions, seed=c.seed
        )
        self.maternal.requires_grad_(False)
        negative = task.negative_demonstration
        pair = Transitions.cat([split_heldout(parts[name])[1] for name in ("expert", negative)])
        report[f"heldout_expert_vs_{negative}_accuracy"] = balanced_accuracy(self.maternal, pair)
        report["demonstrations"] = {name: n for name, (_, n, _) in demos.items()}
        return report

    # ------------------------------------------------------------------ one update
    def collect_rollout(self) -> dict[str, torch.Tensor]:
        c, core, task, N = self.config, self.core, self.task, self.config.worlds * self.core.A
        T = c.rollout
        buf = {
            "obs": torch.empty(T, N, core.obs_dim, dtype=torch.uint8, device=self.device),
            "action": torch.empty(T, N, dtype=torch.int64, device=self.device),
            "logp": torch.empty(T, N, device=self.device),
            "v_task": torch.empty(T, N, device=self.device),
            "v_mat": torch.empty(T, N, device=self.device),
            "r_task": torch.empty(T, N, device=self.device),
            "r_mat": torch.zeros(T, N, device=self.device),
            "done": torch.empty(T, N, device=self.device),
            "live": torch.empty(T, N, device=self.device),
        }
        if c.method == "tom":  # the baby's move in each step (-1: none to predict)
            buf["baby_move"] = torch.full((T, N), -1, dtype=torch.int64, device=self.device)
        if self.preferences is not None:  # what annotators read, and the steps that count
            buf["facts"] = torch.empty(T, N, len(FACTS), device=self.device)
            buf["judged"] = torch.empty(T, N, device=self.device)
        stats = {"harm": 0.0, "exposed": 0.0, "episodes": 0.0}
        outcomes: dict[str, float] = {}
        clock = time.perf_counter
        for t in range(T):
            tick = clock()
            obs = self.obs.reshape(N, -1)
            with torch.no_grad():
                logits, v_task, v_mat = self.net(obs)
                probs = torch.softmax(logits, -1)
                action = torch.multinomial(probs, 1, generator=self.gen)[:, 0]
            before = self.state
            live = task.acting(before).reshape(N)  # agents acting in this step
            tock = clock()
            self.timing["inference_s"] += tock - tick
            state, out = core.step(before, action.view(c.worlds, core.A))
            tick = clock()
            self.timing["env_s"] += tick - tock
            buf["obs"][t], buf["action"][t], buf["v_task"][t], buf["v_mat"][t] = obs, action, v_task, v_mat
            buf["logp"][t] = torch.log(probs.gather(1, action[:, None])[:, 0] + 1e-12)
            buf["r_task"][t] = out.reward.reshape(N) * c.reward_scale
            if self.maternal is not None:
                m0 = clock()
                buf["r_mat"][t] = maternal_reward(
                    self.maternal,
                    self.obs,
                    action.view(c.worlds, core.A),
                    out.obs,
                    task.judged(before),
                    task.rules(core, before, out, c.mat_penalty),
                    c.mat_learned_weight,
                    task.learned_offset,
                ).reshape(N)
                spent = clock() - m0
                self.timing["maternal_s"] += spent
                tick += spent  # M's time is not environment time
            harmed, exposed = task.harm(before, out)  # (B, A) each
            if c.method == "ppo-lagrangian":  # the cost stream: one unit per harm event
                buf["r_mat"][t] = -(harmed & exposed).reshape(N).float()
            elif c.method == "choice":
                buf["r_mat"][t] = task.choice(core, state, c.choice_steps).reshape(N)
            elif c.method == "tom":
                buf["baby_move"][t] = task.baby_moves(before, state).reshape(N)
            elif c.method == "kindness":  # her own judgement of her baby's situation, names switched
                with torch.no_grad():
                    _, v_baby, _ = self.net(task.perspective(core, state).reshape(N, -1))
                buf["r_mat"][t] = v_baby * task.judged(state).reshape(N)
            elif self.preferences is not None:
                buf["facts"][t] = task.care_facts(core, before, out).reshape(N, -1)
                buf["judged"][t] = task.judged(before).reshape(N).float()
            ended = task.ended(state, out)  # (B,)
            done = out.terminated | ended[:, None]
            buf["done"][t], buf["live"][t] = done.reshape(N).float(), live.float()
            stats["harm"] += float((harmed & exposed).sum())
            stats["exposed"] += float(exposed.sum())
            self.tally = task.track(self.tally, before, out)
            if ended.any():
                stats["episodes"] += float(ended.sum())
                for name, value in task.outcome(self.tally, state).items():
                    outcomes[name] = outcomes.get(name, 0.0) + float(value[ended].sum())
                state, next_obs = core.reset_done(state, out.obs, ended)
                fresh = task.start_episode(state)
                self.tally = {k: torch.where(ended, fresh[k], v) for k, v in self.tally.items()}
            else:
                next_obs = out.obs
            self.timing["env_s"] += clock() - tick  # resets count as environment time
            self.state, self.obs = state, next_obs
        return buf | {"stats": stats, "outcomes": outcomes}  # type: ignore[return-value]

    def train_step(self, buf: dict, beta: float) -> dict[str, float]:
        c, N, T = self.config, self.config.worlds * self.core.A, self.config.rollout
        with torch.no_grad():
            _, next_task, next_mat = self.net(self.obs.reshape(N, -1))
        a_task, ret_task = gae(buf["r_task"], buf["v_task"], next_task, buf["done"], c.gamma, c.lam)
        a_mat, ret_mat = gae(buf["r_mat"], buf["v_mat"], next_mat, buf["done"], c.gamma, c.lam)
        live = buf["live"].reshape(-1) > 0
        flat = {
            k: v.reshape(T * N, *v.shape[2:])[live] for k, v in buf.items() if k not in ("stats", "outcomes")
        }
        flat["a_task"], flat["a_mat"] = a_task.reshape(-1)[live], a_mat.reshape(-1)[live]
        flat["ret_task"], flat["ret_mat"] = ret_task.reshape(-1)[live], ret_mat.reshape(-1)[live]
        size = flat["action"].shape[0]
        mb = max(1, size // c.minibatches)
        logs = {
            "policy_loss": 0.0,
            "value_task_loss": 0.0,
            "value_mat_loss": 0.0,
            "entropy": 0.0,
            "approx_kl": 0.0,
            "clip_frac": 0.0,
        }
        count = 0
        tom_tally = (0, 0)  # correct predictions, predictions judged (tensors once counted: no sync)
        for _ in range(c.epochs):
            order = torch.randperm(size, generator=self.gen, device=self.device)
            for start in range(0, size - mb + 1, mb):
                idx = order[start : start + mb]
                features = self.net.trunk(flat["obs"][idx])  # shared by every head's loss
                logits, v_task, v_mat = self.net.heads(features)
                logp_all = F.log_softmax(logits, -1)
                logp = logp_all.gather(1, flat["action"][idx][:, None])[:, 0]
                ratio = torch.exp(logp - flat["logp"][idx])
                adv = combined_advantage(flat["a_task"][idx], flat["a_mat"][idx], beta)
                policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.clip, 1 + c.clip)).mean()
                v_task_loss = 0.5 * (v_task - flat["ret_task"][idx]).pow(2).mean()
                v_mat_loss = 0.5 * (v_mat - flat["ret_mat"][idx]).pow(2).mean()
                entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
                loss = policy_loss + c.vf_coef * (v_task_loss + v_mat_loss) - c.ent_coef * entropy
                if c.method == "tom":  # the prediction head learns only from its own error
                    tom_loss, correct, judged = self._baby_move_loss(features, flat["baby_move"][idx])
                    loss = loss + c.tom_coef * tom_loss
                    logs["tom_loss"] = logs.get("tom_loss", 0.0) + tom_loss.item()
                    tom_tally = (tom_tally[0] + correct, tom_tally[1] + judged)
                self.opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), c.max_grad_norm)
                self.opt.step()
                with torch.no_grad():
                    log_ratio = logp - flat["logp"][idx]
                    logs["approx_kl"] += float(((ratio - 1) - log_ratio).mean())
                    logs["clip_frac"] += float(((ratio - 1).abs() > c.clip).float().mean())
                logs["policy_loss"] += policy_loss.item()
                logs["value_task_loss"] += v_task_loss.item()
                logs["value_mat_loss"] += v_mat_loss.item()
                logs["entropy"] += entropy.item()
                count += 1
        out = {k: v / max(1, count) for k, v in logs.items()}
        if c.method == "tom":
            correct, judged = int(tom_tally[0]), int(tom_tally[1])
            out["tom_accuracy"] = correct / judged if judged else float("nan")
        return out

    def _baby_move_loss(
        self, features: torch.Tensor, moves: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean cross-entropy of the baby-move head over the rows where the baby made a move of its own
        (0 if none), with the correct and judged counts. features (M, hidden), moves (M,) in -1..4."""
        judged = moves >= 0
        target = moves.clamp(min=0)
        logits = self.net.baby_move_logits(features)
        nll = F.cross_entropy(logits, target, reduction="none")
        loss = (nll * judged).sum() / judged.sum().clamp(min=1)
        correct = ((logits.argmax(-1) == target) & judged).sum()
        return loss, correct, judged.sum()

    def learn_preferences(self, buf: dict) -> dict[str, float]:
        """RLHF/RLAIF between rollout and update: buy this update's labels from the rollout's segments,
        fit the reward ensemble on every label so far, and pay its reward on the steps a baby lives."""
        c, prefs = self.config, self.preferences
        due = prefs.due(self.update, self.updates_weaning_starts)
        logs = dict.fromkeys(PREFERENCE_COLUMNS, float("nan"))
        logs |= prefs.buy(buf, due, pool=4)
        logs["reward_model_loss"] = prefs.fit(c.reward_model_steps)
        logs["labels"] = prefs.count
        buf["r_mat"] = prefs.reward(buf["obs"], buf["action"]) * buf["judged"]
        return logs

    # ------------------------------------------------------------------ the loop
    @property
    def per_update(self) -> int:
        return self.config.worlds * self.core.A * self.config.rollout

    @property
    def updates_weaning_starts(self) -> int:
        """Updates of the scheduled phase; β₁ is 0 from here on."""
        return max(1, -(-self.config.steps // self.per_update))

    @property
    def updates_total(self) -> int:
        return self.updates_weaning_starts + -(-self.config.wean_steps // self.per_update)

    def run(self, progress: Callable[[int, int, dict, float], None] | None = None) -> None:
        c, per_update = self.config, self.per_update
        while self.update < self.updates_total:
            start = time.perf_counter()
            buf = self.collect_rollout()
            rollout_s = time.perf_counter() - start
            stats = buf["stats"]
            harm_rate = stats["harm"] / max(1.0, stats["exposed"])
            if self.update < self.updates_weaning_starts:
                beta = self.schedule.step(self.update, harm_rate)
            else:
                beta = 0.0  # weaned: the maternal signal is gone
            learning = self.preferences is not None and self.update < self.updates_weaning_starts
            logs = self.learn_preferences(buf) if learning else {}  # weaned: the reward model is unused
            logs |= self.train_step(buf, beta)
            self.timing["update_s"] = time.perf_counter() - start - rollout_s
            self.update += 1
            row = {
                "update": self.update,
                "agent_steps": self.update * per_update,
                "beta1": beta,
                "harm_rate": harm_rate,
                "task_reward": float(buf["r_task"].mean() / c.reward_scale),
                "mat_reward": float(buf["r_mat"].mean()),
                "episodes_done": int(stats["episodes"]),
                **self.task.train_metrics(buf["outcomes"], stats["episodes"]),
                **logs,
            }
            if c.method == "ppo-lagrangian":
                row["lagrange_multiplier"] = self.schedule.multiplier
            self._append_csv("metrics.csv", self.columns, row)
            elapsed = time.perf_counter() - start
            self._append_csv(
                "speed.csv",
                ("update", "agent_steps_per_s", "rollout_s", *TIMED),
                {"update": self.update, "agent_steps_per_s": per_update / elapsed, "rollout_s": rollout_s}
                | self.timing,
            )
            self.timing = dict.fromkeys(TIMED, 0.0)
            if self.update % c.checkpoint_every == 0 or self.update == self.updates_total:
                self.save_checkpoint()
            if progress is not None:
                progress(self.update, self.updates_total, row, per_update / elapsed)

    def _append_csv(self, name: str, columns: tuple[str, ...], row: dict) -> None:
        path = self.out / name
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            if new:
                writer.writeheader()
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        """Everything needed to continue exactly: weights, optimiser, sampler, world, bookkeeping."""
        tensors = {f"net.{k}": v.contiguous() for k, v in self.net.state_dict().items()}
        tensors |= optimizer_tensors(self.opt, "opt")
        if self.preferences is not None:
            tensors |= {f"pref.{k}": v.contiguous() for k, v in self.preferences.state().items()}
        tensors["sampler"] = self.gen.get_state()
        for f in dataclasses.fields(self.task.state_class):
            tensors[f"world.{f.name}"] = getattr(self.state, f.name).clone()  # some fields alias others
        tensors["obs"] = self.obs.contiguous()
        tensors |= {f"tally.{k}": v.contiguous() for k, v in self.tally.items()}
        tmp = self.out / "checkpoint.safetensors.tmp"
        save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp))
        meta = {
            "update": self.update,
            "schedule": self.schedule.to_json(),
            "opt_param_groups": self.opt.state_dict()["param_groups"],
        }
        if self.preferences is not None:
            meta["pref_opt_param_groups"] = self.preferences.opt.state_dict()["param_groups"]
        (self.out / "checkpoint.json.tmp").write_text(json.dumps(meta))
        tmp.replace(self.out / "checkpoint.safetensors")
        (self.out / "checkpoint.json.tmp").replace(self.out / "checkpoint.json")
        save_file(
            {k: v.cpu().contiguous() for k, v in self.net.state_dict().items()},
            str(self.out / "mother.safetensors"),
        )

    def load_checkpoint(self) -> None:
        tensors = load_checked(self.out / "checkpoint.safetensors")
        if "born" in tensors:  # checkpoints from before tasks kept the nursery's one tally at top level
            tensors["tally.born"] = tensors.pop("born")
        meta = read_json(self.out / "checkpoint.json")
        dev = self.device
        fields = dataclasses.fields(self.task.state_class)
        expected = {f"world.{f.name}": getattr(self.state, f.name) for f in fields}
        expected["obs"] = self.obs
        expected |= {f"tally.{k}": v for k, v in self.tally.items()}
        for key, fresh in expected.items():
            if key not in tensors or tensors[key].shape != fresh.shape:
                found = tuple(tensors[key].shape) if key in tensors else "nothing"
                raise ConfigError(
                    f"checkpoint in {self.out} does not fit this run's world: {key} has shape {found}, "
                    f"expected {tuple(fresh.shape)} (a checkpoint from another world or run?)"
                )
        try:
            self.net.load_state_dict({k[4:]: v.to(dev) for k, v in tensors.items() if k.startswith("net.")})
        except RuntimeError as err:
            raise ConfigError(
                f"checkpoint in {self.out} does not fit the network: {str(err).splitlines()[0]}"
            ) from None
        load_optimizer(self.opt, tensors, "opt", meta["opt_param_groups"], dev)
        if self.preferences is not None:
            mine = {k[5:]: v for k, v in tensors.items() if k.startswith("pref.")}
            self.preferences.load(mine, meta["pref_opt_param_groups"])
        self.gen.set_state(tensors["sampler"])
        self.state = self.task.state_class(**{f.name: tensors[f"world.{f.name}"].to(dev) for f in fields})
        self.obs = tensors["obs"].to(dev)
        self.tally = {k: tensors[f"tally.{k}"].to(dev) for k in self.tally}
        self.update = int(meta["update"])
        self.schedule = BetaSchedule.from_json(meta["schedule"])
        for name in ("metrics.csv", "speed.csv"):  # drop rows written after this checkpoint
            path = self.out / name
            if path.exists():
                with path.open(newline="") as f:  # keep the csv module's line endings as written
                    lines = f.read().splitlines(keepends=True)
                with path.open("w", newline="") as f:
                    f.write("".join(lines[: 1 + self.update]))


def load_checked(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning a missing or corrupt file into one clear error."""
    if not path.exists():
        raise ConfigError(f"missing checkpoint file {path}")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises several types for truncated/corrupt files
        raise ConfigError(f"corrupt checkpoint {path}: {err}") from None


def read_json(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"missing file {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"corrupt JSON {path}: {err}") from None


def run_world(out: Path, saved: dict | None = None) -> tuple[str, Any]:
    """(world name, world config) a run directory was started with (runs from before lava: nursery);
    `saved` is its config.json when already read."""
    saved = saved or read_json(Path(out) / "config.json")
    name = saved.get("world_name", "nursery")
    return name, build_config(get_task(name).config_class, saved["world"])


def started_with(out: Path, world: Any, config: TrainConfig) -> bool:
    """Whether the run in `out` was started with exactly these settings (a setting added to the code
    since the run was saved counts as its default)."""
    saved = read_json(out / "config.json")
    return run_world(out, saved)[1] == world and build_config(TrainConfig, saved["train"]) == config


def start_run(out: Path, world: Any, config: TrainConfig, device: str, resume: bool) -> Trainer:
    """A fresh run (refusing to overwrite an existing one) or a resumed one (refusing a changed config).
    `world` is a world's config; resuming reads the run's own world and settings instead."""
    out = Path(out)
    config_path = out / "config.json"
    if resume:
        previous = read_json(config_path)
        _, world = run_world(out, previous)
        config = build_config(TrainConfig, {**previous["train"], "steps": config.steps})
        trainer = Trainer(out, world, config, device)
        if previous["train"]["method"] == "rlmf":
            trainer.maternal = load_maternal(out, trainer.core.obs_dim, trainer.task.n_actions, device)
        if (out / "checkpoint.json").exists():
            trainer.load_checkpoint()
        return trainer
    if config_path.exists():
        raise ConfigError(f"{out} already holds a run; use --resume to continue it or choose another --out")
    trainer = Trainer(out, world, config, device)  # checks the world before anything is written
    out.mkdir(parents=True, exist_ok=True)
    saved = {
        "world_name": trainer.task.name,
        "world": dataclasses.asdict(world),
        "train": dataclasses.asdict(config),
    }
    config_path.write_text(json.dumps(saved, indent=1))
    if config.method == "rlmf":
        report = trainer.fit_maternal()
        save_file(
            {k: v.cpu() for k, v in trainer.maternal.state_dict().items()}, str(out / "maternal.safetensors")
        )
        (out / "maternal.json").write_text(json.dumps(report, indent=1))
    return trainer


def load_maternal(out: Path, obs_dim: int, n_actions: int, device: str) -> MaternalModel:
    model = MaternalModel(obs_dim, n_actions)
    try:
        model.load_state_dict(load_checked(out / "maternal.safetensors"))
    except RuntimeError as err:
        raise ConfigError(
            f"maternal model in {out} does not fit this world: {str(err).splitlines()[0]}"
        ) from None
    return model.to(device).requires_grad_(False)
