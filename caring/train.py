"""Train mothers with PPO and two critics, with or without RLMF (seed 000, Algorithm 1), on the batched
nursery. One file, top to bottom: config, maternal model, rollout, advantages, update, checkpoints.

Methods: `ppo` (β₁ = 0, the plain-RL baseline: the maternal critic is still trained, never used) and
`rlmf` (A_total = (1 − β₁)·A_task + β₁·A_mat with β₁ from a schedule). All mothers share one network.
A run directory holds config.json, the maternal model and the mother as safetensors (+ JSON), the last
checkpoint (weights, optimiser, sampler and the whole batched world, so `--resume` continues exactly),
metrics.csv (one deterministic row per update) and speed.csv (wall-clock, kept apart for that reason).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from caring.advantages import combined_advantage, gae
from caring.evaluate import episode_keys
from caring.maternal import (
    MaternalModel,
    PerturbedExpert,
    Transitions,
    balanced_accuracy,
    collect,
    maternal_reward,
    split_heldout,
    train_maternal,
)
from caring.networks import MotherNet
from caring.schedules import SCHEDULES, BetaSchedule
from worlds.config import ConfigError, build_config, param, validate_fields
from worlds.nursery.config import NurseryConfig
from worlds.nursery.core import HARM_CAUSES, N_ACTIONS, NurseryCore, NurseryState
from worlds.nursery.scripted import SCRIPTED

METHODS = ("ppo", "rlmf")


@dataclass(frozen=True)
class TrainConfig:
    method: str = param("rlmf", "ppo (beta1 = 0) or rlmf", choices=METHODS)
    beta_schedule: str = param("adaptive", "how beta1 is weaned", choices=SCHEDULES)
    beta0: float = param(
        0.5, "beta1 at the start (1.0 leaves no task signal to learn self-care from)", 0.0, 1.0
    )
    beta_min: float = param(0.05, "beta1's floor", 0.0, 1.0)
    harm_threshold: float = param(
        0.02, "adaptive: harm rate (per baby-step) an update may have and count as clean", 0.0, 1.0
    )
    beta_horizon: int = param(100, "linear schedule: updates to reach beta_min", 1, 10**7)
    beta_kappa: float = param(0.03, "exp schedule: decay per update", 0.0, 10.0)
    steps: int = param(2_000_000, "agent-steps of experience to train on", 1, 10**11)
    seed: int = param(0, "random seed", 0, 2**62)
    worlds: int = param(256, "nursery worlds stepped together", 1, 65536)
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
        "expert episodes for the maternal model (2x as many perturbed-expert and random, 4x negligent)",
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

    def schedule(self) -> BetaSchedule:
        kind = "constant" if self.method == "ppo" else self.beta_schedule
        beta0 = 0.0 if self.method == "ppo" else self.beta0
        return BetaSchedule(
            kind=kind,
            beta0=beta0,
            beta_min=min(self.beta_min, beta0),
            horizon=self.beta_horizon,
            kappa=self.beta_kappa,
            harm_threshold=self.harm_threshold,
        )


TIMED = ("env_s", "inference_s", "maternal_s", "update_s")

METRIC_COLUMNS = (
    "update",
    "agent_steps",
    "beta1",
    "harm_rate",
    "task_reward",
    "mat_reward",
    "episodes_done",
    "baby_survival",
    "mother_survival",
    "policy_loss",
    "value_task_loss",
    "value_mat_loss",
    "entropy",
    "approx_kl",
    "clip_frac",
)


class Trainer:
    """Holds everything a run needs; `run()` trains to `config.steps`, checkpointing as it goes."""

    def __init__(self, out: Path, world: NurseryConfig, config: TrainConfig, device: str = "cpu"):
        self.out, self.world, self.config, self.device = Path(out), world, config, torch.device(device)
        self.core = NurseryCore(world, device)
        torch.manual_seed(config.seed)
        self.net = MotherNet(self.core.obs_dim, N_ACTIONS, config.hidden).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr, eps=1e-5)
        self.gen = torch.Generator(device=self.device).manual_seed(config.seed)
        self.schedule = config.schedule()
        self.maternal: MaternalModel | None = None
        self.update = 0
        self.timing = dict.fromkeys(TIMED, 0.0)  # seconds per part of the current update (speed.csv)
        self.state, self.obs = self.core.reset(episode_keys(config.seed, config.worlds, self.device))
        self.born = self.state.baby_alive.long()  # (A, B) babies born this episode, per slot

    # ------------------------------------------------------------------ maternal model
    def fit_maternal(self) -> dict:
        c, core = self.config, self.core
        expert = SCRIPTED["expert"](core)
        demos = {  # name: (policy, episodes, label)
            "expert": (expert, c.demo_episodes, 1.0),
            "perturbed-expert": (perturbed := PerturbedExpert(expert), 2 * c.demo_episodes, perturbed.labels),
            "negligent": (SCRIPTED["negligent"](core), 4 * c.demo_episodes, 0.0),
            "random": (SCRIPTED["random"](core), 2 * c.demo_episodes, 0.0),
        }
        parts = {
            name: collect(core, policy, n, c.seed + 1000 + i, label)
            for i, (name, (policy, n, label)) in enumerate(demos.items())
        }
        self.maternal, report = train_maternal(Transitions.cat(list(parts.values())), seed=c.seed)
        self.maternal.requires_grad_(False)
        pair = Transitions.cat([split_heldout(parts[name])[1] for name in ("expert", "negligent")])
        report["heldout_expert_vs_negligent_accuracy"] = balanced_accuracy(self.maternal, pair)
        report["demonstrations"] = {name: n for name, (_, n, _) in demos.items()}
        return report

    # ------------------------------------------------------------------ one update
    def collect_rollout(self) -> dict[str, torch.Tensor]:
        c, core, N = self.config, self.core, self.config.worlds * self.core.A
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
        stats = {
            "harm": 0.0,
            "baby_steps": 0.0,
            "episodes": 0.0,
            "survived": 0.0,
            "born": 0.0,
            "mothers_alive": 0.0,
        }
        clock = time.perf_counter
        for t in range(T):
            tick = clock()
            obs = self.obs.reshape(N, -1)
            with torch.no_grad():
                logits, v_task, v_mat = self.net(obs)
                probs = torch.softmax(logits, -1)
                action = torch.multinomial(probs, 1, generator=self.gen)[:, 0]
            live = self.state.mother_alive.T.reshape(N)  # mothers alive before the step
            baby_was_alive = self.state.baby_alive.T
            energy_ok = (self.state.energy >= self.world.feed_cost).T
            tock = clock()
            self.timing["inference_s"] += tock - tick
            state, out = core.step(self.state, action.view(c.worlds, core.A))
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
                    baby_was_alive,
                    out.events,
                    energy_ok,
                    c.mat_penalty,
                    c.mat_learned_weight,
                ).reshape(N)
                spent = clock() - m0
                self.timing["maternal_s"] += spent
                tick += spent  # M's time is not environment time
            done = out.terminated | (out.truncated | ~state.mother_alive.any(0))[:, None]
            buf["done"][t], buf["live"][t] = done.reshape(N).float(), live.float()
            harm = sum(out.events[f"baby_harm_{cause}"] for cause in HARM_CAUSES)
            stats["harm"] += float((harm > 0).sum())
            stats["baby_steps"] += float(baby_was_alive.sum())
            self.born = self.born + out.events["baby_born"].T
            # A world ends at max_cycles, or as soon as no mother is left (her babies count as lost:
            # none can feed itself before it grows).
            ended = out.truncated | ~state.mother_alive.any(0)
            if ended.any():
                stats["episodes"] += float(ended.sum())
                stats["survived"] += float((state.baby_alive & state.mother_alive.any(0))[:, ended].sum())
                stats["born"] += float(self.born[:, ended].sum())
                stats["mothers_alive"] += float(state.mother_alive[:, ended].sum())
                state, next_obs = core.reset_done(state, out.obs, ended)
                self.born = torch.where(ended, state.baby_alive.long(), self.born)
            else:
                next_obs = out.obs
            self.timing["env_s"] += clock() - tick  # resets count as environment time
            self.state, self.obs = state, next_obs
        return buf | {"stats": stats}  # type: ignore[return-value]

    def train_step(self, buf: dict, beta: float) -> dict[str, float]:
        c, N, T = self.config, self.config.worlds * self.core.A, self.config.rollout
        with torch.no_grad():
            _, next_task, next_mat = self.net(self.obs.reshape(N, -1))
        a_task, ret_task = gae(buf["r_task"], buf["v_task"], next_task, buf["done"], c.gamma, c.lam)
        a_mat, ret_mat = gae(buf["r_mat"], buf["v_mat"], next_mat, buf["done"], c.gamma, c.lam)
        live = buf["live"].reshape(-1) > 0
        flat = {k: v.reshape(T * N, *v.shape[2:])[live] for k, v in buf.items() if k != "stats"}
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
        for _ in range(c.epochs):
            order = torch.randperm(size, generator=self.gen, device=self.device)
            for start in range(0, size - mb + 1, mb):
                idx = order[start : start + mb]
                logits, v_task, v_mat = self.net(flat["obs"][idx])
                logp_all = F.log_softmax(logits, -1)
                logp = logp_all.gather(1, flat["action"][idx][:, None])[:, 0]
                ratio = torch.exp(logp - flat["logp"][idx])
                adv = combined_advantage(flat["a_task"][idx], flat["a_mat"][idx], beta)
                policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.clip, 1 + c.clip)).mean()
                v_task_loss = 0.5 * (v_task - flat["ret_task"][idx]).pow(2).mean()
                v_mat_loss = 0.5 * (v_mat - flat["ret_mat"][idx]).pow(2).mean()
                entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
                loss = policy_loss + c.vf_coef * (v_task_loss + v_mat_loss) - c.ent_coef * entropy
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
        return {k: v / max(1, count) for k, v in logs.items()}

    # ------------------------------------------------------------------ the loop
    @property
    def updates_total(self) -> int:
        per_update = self.config.worlds * self.core.A * self.config.rollout
        return max(1, -(-self.config.steps // per_update))

    def run(self, progress=None) -> None:
        c = self.config
        per_update = c.worlds * self.core.A * c.rollout
        while self.update < self.updates_total:
            start = time.perf_counter()
            buf = self.collect_rollout()
            rollout_s = time.perf_counter() - start
            stats = buf["stats"]
            harm_rate = stats["harm"] / max(1.0, stats["baby_steps"])
            beta = self.schedule.step(self.update, harm_rate)
            logs = self.train_step(buf, beta)
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
                "baby_survival": stats["survived"] / stats["born"] if stats["born"] else float("nan"),
                "mother_survival": (
                    stats["mothers_alive"] / (stats["episodes"] * self.core.A)
                    if stats["episodes"]
                    else float("nan")
                ),
                **logs,
            }
            self._append_csv("metrics.csv", METRIC_COLUMNS, row)
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
        opt_state = self.opt.state_dict()
        for pid, st in opt_state["state"].items():
            for k, v in st.items():
                tensors[f"opt.{pid}.{k}"] = v.reshape(1) if v.dim() == 0 else v.contiguous()
        tensors["sampler"] = self.gen.get_state()
        for f in dataclasses.fields(NurseryState):
            tensors[f"world.{f.name}"] = getattr(self.state, f.name).clone()  # some fields alias others
        tensors["obs"], tensors["born"] = self.obs.contiguous(), self.born.contiguous()
        tmp = self.out / "checkpoint.safetensors.tmp"
        save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp))
        meta = {
            "update": self.update,
            "schedule": self.schedule.to_json(),
            "opt_param_groups": opt_state["param_groups"],
        }
        (self.out / "checkpoint.json.tmp").write_text(json.dumps(meta))
        tmp.replace(self.out / "checkpoint.safetensors")
        (self.out / "checkpoint.json.tmp").replace(self.out / "checkpoint.json")
        save_file(
            {k: v.cpu().contiguous() for k, v in self.net.state_dict().items()},
            str(self.out / "mother.safetensors"),
        )

    def load_checkpoint(self) -> None:
        tensors = load_checked(self.out / "checkpoint.safetensors")
        meta = read_json(self.out / "checkpoint.json")
        dev = self.device
        expected = {f"world.{f.name}": getattr(self.state, f.name) for f in dataclasses.fields(NurseryState)}
        expected["obs"] = self.obs
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
        opt_state = {"state": {}, "param_groups": meta["opt_param_groups"]}
        for key, v in tensors.items():
            if key.startswith("opt."):
                _, pid, name = key.split(".", 2)
                opt_state["state"].setdefault(int(pid), {})[name] = (
                    v.to(dev) if name != "step" else v.reshape(())
                )
        self.opt.load_state_dict(opt_state)
        self.gen.set_state(tensors["sampler"])
        self.state = NurseryState(
            **{f.name: tensors[f"world.{f.name}"].to(dev) for f in dataclasses.fields(NurseryState)}
        )
        self.obs, self.born = tensors["obs"].to(dev), tensors["born"].to(dev)
        self.update = int(meta["update"])
        self.schedule = BetaSchedule.from_json(meta["schedule"])
        for name in ("metrics.csv", "speed.csv"):  # drop rows written after this checkpoint
            path = self.out / name
            if path.exists():
                lines = path.read_text().splitlines(keepends=True)
                path.write_text("".join(lines[: 1 + self.update]))


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


def started_with(out: Path, world: NurseryConfig, config: TrainConfig) -> bool:
    """Whether the run in `out` was started with exactly these settings (a setting added to the code
    since the run was saved counts as its default)."""
    saved = read_json(out / "config.json")
    return (
        build_config(NurseryConfig, saved["world"]) == world
        and build_config(TrainConfig, saved["train"]) == config
    )


def start_run(out: Path, world: NurseryConfig, config: TrainConfig, device: str, resume: bool) -> Trainer:
    """A fresh run (refusing to overwrite an existing one) or a resumed one (refusing a changed config)."""
    out = Path(out)
    config_path = out / "config.json"
    saved = {"world": dataclasses.asdict(world), "train": dataclasses.asdict(config)}
    if resume:
        previous = read_json(config_path)
        world = build_config(NurseryConfig, previous["world"])
        config = build_config(TrainConfig, {**previous["train"], "steps": config.steps})
        trainer = Trainer(out, world, config, device)
        if previous["train"]["method"] == "rlmf":
            trainer.maternal = load_maternal(out, trainer.core.obs_dim, device)
        if (out / "checkpoint.json").exists():
            trainer.load_checkpoint()
        return trainer
    if config_path.exists():
        raise ConfigError(f"{out} already holds a run; use --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(saved, indent=1))
    trainer = Trainer(out, world, config, device)
    if config.method == "rlmf":
        report = trainer.fit_maternal()
        save_file(
            {k: v.cpu() for k, v in trainer.maternal.state_dict().items()}, str(out / "maternal.safetensors")
        )
        (out / "maternal.json").write_text(json.dumps(report, indent=1))
    return trainer


def load_maternal(out: Path, obs_dim: int, device: str) -> MaternalModel:
    model = MaternalModel(obs_dim)
    try:
        model.load_state_dict(load_checked(out / "maternal.safetensors"))
    except RuntimeError as err:
        raise ConfigError(
            f"maternal model in {out} does not fit this world: {str(err).splitlines()[0]}"
        ) from None
    return model.to(device).requires_grad_(False)
