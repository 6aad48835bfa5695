"""Training settings: the trainer's own, plus every registered stream's (`caring.streams`), as one flat
frozen `TrainConfig` (so `--train-set key=value`, config.json and experiment files stay one namespace).
A stream declares its settings in its own file; they join TrainConfig from the registry.

Defaults are the recipe that works in the nursery (RLMF, adaptive β₁, M's learned judgement weighted
0.1 against its rules, 12M agent-steps: README "Training"); a world's task may set its own
(`Task.train_defaults`), each method its own recipe there (`Task.method_defaults`), and a named
world preset its own (`Task.preset_train_defaults`), which `train_config` puts under whatever the user
sets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from caring.episodes import MAX_SEED
from caring.networks import CRITICS
from caring.ppo import ADV_NORMS
from caring.schedules import WEANING
from caring.streams import STREAMS, get_stream
from worlds.config import ConfigError, build_config, param, validate_fields


@dataclass(frozen=True)
class TrainerSettings:
    """What every method shares: which stream, how β₁ is weaned, the budget, PPO and the network."""

    method: str = param("rlmf", "training method (the second stream)", choices=tuple(STREAMS))
    beta_schedule: str = param("adaptive", "how beta1 is weaned", choices=WEANING)
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
    harm_threshold_relative: float = param(
        0.0,
        "adaptive: if > 0, an update is clean when its harm rate is at most this fraction of the run's "
        "first update's (replaces harm_threshold, so weaning can happen in any world)",
        0.0,
        1.0,
    )
    beta_horizon: int = param(100, "linear schedule: updates to reach beta_min", 1, 10**7)
    beta_kappa: float = param(0.03, "exp schedule: decay per update", 0.0, 10.0)
    steps: int = param(12_000_000, "agent-steps of experience to train on", 1, 10**11)
    warmup_world: str = param(
        "",
        "a curriculum's first world: the run's world with these settings changed, 'key=value,key=value' "
        "(e.g. 'birth_place=beside,orphans=0'); trained in for warmup_steps, then the run's own world",
    )
    warmup_steps: int = param(0, "agent-steps of `steps` spent in warmup_world first", 0, 10**11)
    wean_steps: int = param(
        0, "agent-steps trained after `steps` with beta1 = 0 (is the habit kept once M is gone?)", 0, 10**11
    )
    seed: int = param(0, "random seed", 0, MAX_SEED)
    worlds: int = param(1024, "worlds stepped together", 1, 65536)
    rollout: int = param(16, "steps per world per update", 1, 10000)
    epochs: int = param(4, "PPO epochs per update", 1, 100)
    minibatches: int = param(4, "minibatches per epoch", 1, 1024)
    lr: float = param(3e-4, "Adam learning rate", 1e-7, 1.0)
    lr_anneal: bool = param(False, "the learning rate falls linearly from lr towards 0 over the updates")
    gamma: float = param(0.99, "discount", 0.0, 1.0)
    lam: float = param(0.95, "GAE lambda", 0.0, 1.0)
    clip: float = param(0.2, "PPO clip range", 0.0, 1.0)
    ent_coef: float = param(0.02, "entropy bonus", 0.0, 1.0)
    vf_coef: float = param(0.5, "value loss weight (each critic)", 0.0, 100.0)
    max_grad_norm: float = param(0.5, "gradient clipping", 0.0, 100.0)
    hidden: int = param(128, "hidden units per trunk layer", 8, 4096)
    critics: str = param(
        "shared",
        "value heads on the policy's trunk, critics with trunks of their own, or only the maternal critic "
        "on a trunk of its own",
        choices=CRITICS,
    )
    kin_match: int = param(
        0,
        "features per marker from a comparator with one set of weights that reads each marker she sees or "
        "hears beside her own kin marker, for the policy's trunk (0: none; worlds with markers only)",
        0,
        64,
    )
    init_from: str = param(
        "",
        "a run directory whose trained mother the network starts from (the same network settings; a fresh "
        "optimiser): e.g. a second phase of training with other PPO settings; in a sweep file, {seed} "
        "stands for each cell's seed",
    )
    value_norm: bool = param(False, "PopArt: each critic learns its returns in running-normalised units")
    adv_norm: str = param(
        "per-stream",
        "advantages standardised per stream before beta1 weighs them (a penalty's size cannot matter), "
        "their weighted sum standardised (it can), or neither",
        choices=ADV_NORMS,
    )
    reward_scale: float = param(0.1, "task reward multiplier", 1e-6, 100.0)
    checkpoint_every: int = param(10, "updates between checkpoints", 1, 10**6)
    snapshot_every: int = param(
        25, "updates between copies of the mother kept in snapshots/ (0: none)", 0, 10**6
    )


def _validate(self: Any) -> None:
    validate_fields(self)
    if self.beta_min > self.beta0:
        raise ConfigError(f"beta_min={self.beta_min} exceeds beta0={self.beta0}")
    if (self.worlds * self.rollout) % self.minibatches:
        raise ConfigError(f"worlds*rollout={self.worlds * self.rollout} is not divisible by minibatches")
    warmup_settings(self)
    get_stream(self.method).check(self)


def warmup_settings(config: Any) -> dict[str, str]:
    """The world settings `warmup_world` changes ({} for a run without a warm-up), its form checked."""
    if not config.warmup_world:
        if config.warmup_steps:
            raise ConfigError(f"warmup_steps={config.warmup_steps} needs a warmup_world to train in")
        return {}
    if not 0 < config.warmup_steps < config.steps:
        raise ConfigError(
            f"warmup_world needs 0 < warmup_steps < steps (got warmup_steps={config.warmup_steps}, "
            f"steps={config.steps})"
        )
    settings = {}
    for pair in config.warmup_world.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"warmup_world expects key=value,key=value; got {config.warmup_world!r}")
        settings[key.strip()] = value.strip()
    return settings


def _compose() -> type:
    """TrainerSettings' fields, then each stream's settings in registry order (a settings class two
    streams share, like RLHF's and RLAIF's, joins once)."""
    fields: list[tuple[str, Any, Any]] = []
    owner: dict[str, type] = {}
    for cls in (TrainerSettings, *(stream.Settings for stream in STREAMS.values())):
        for f in dataclasses.fields(cls):
            if f.name in owner:
                if owner[f.name] is not cls:
                    twice = f"{owner[f.name].__name__} and {cls.__name__}"
                    raise TypeError(f"setting {f.name} is declared by {twice}")
                continue
            owner[f.name] = cls
            fields.append((f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata)))
    doc = "Every training setting: the trainer's (TrainerSettings) and each stream's, one flat namespace."
    namespace = {"validate": _validate, "__doc__": doc, "__module__": __name__}
    return dataclasses.make_dataclass("TrainConfig", fields, frozen=True, namespace=namespace)


TrainConfig = _compose()
DEFAULT_METHOD = TrainConfig.__dataclass_fields__["method"].default


def world_preset(world: Any) -> str:
    """The named preset a world's config was built from ("" for a world without presets)."""
    return getattr(world, "preset", "")


def train_config(task: Any, overrides: dict[str, Any] | None = None, preset: str = "") -> Any:
    """The TrainConfig for training in `task`'s world: its defaults (`Task.train_defaults`), then the
    chosen method's recipe there (`Task.method_defaults`), then the recipe of the world's named
    `preset` if it has one (`Task.preset_train_defaults`), under the given overrides (strings or typed
    values), validated."""
    overrides = overrides or {}
    world = task.preset_train_defaults.get(preset, {})
    method = overrides.get("method", world.get("method", task.train_defaults.get("method", DEFAULT_METHOD)))
    recipe = task.method_defaults.get(method, {})
    return build_config(TrainConfig, {**task.train_defaults, **recipe, **world, **overrides})
