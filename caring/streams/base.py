"""The second reward stream: what makes one training method differ from another.

Every mother is trained by the same PPO with two critics (`caring.ppo`); the policy follows
A_total = (1 − β₁)·A_task + β₁·A_second. A method is a `SecondStream`: what it pays per step (r_mat,
the second critic's reward), how β₁ is weaned, and, optionally, what it prepares before training
(RLMF fits its maternal model M), what it does after each rollout (RLHF buys labels and refits its
reward model), an extra loss (theory of mind) and the state it checkpoints. The base class is the
protocol, and its defaults are plain PPO's: pay nothing, β₁ = 0 is the `ppo` stream's choice.

Adding a method: a file with a subclass (its name, its `Settings` dataclass of `param(...)` fields,
what it pays) and one line in `caring.streams.STREAMS`; TrainConfig, `caring train --method`, the
sweep validator and `caring params --train` learn it from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from caring.networks import MotherNet
from caring.protocols import Task, Transition
from caring.schedules import BetaSchedule


@dataclass(frozen=True)
class NoSettings:
    """The settings of a stream that has none of its own."""


@dataclass
class Context:
    """What a stream may use: the run's settings (a TrainConfig), its world, the mother's network (the
    one being trained) and the run directory (for files the stream keeps, e.g. M's weights)."""

    config: Any
    task: Task
    core: Any
    net: MotherNet
    out: Path
    device: torch.device


def constant_schedule(config: Any) -> BetaSchedule:
    """β₁ = `beta0` throughout (for intrinsic rewards that are never weaned)."""
    return BetaSchedule(kind="constant", beta0=config.beta0, beta_min=min(config.beta_min, config.beta0))


class SecondStream:
    name: ClassVar[str]
    Settings: ClassVar[type] = NoSettings  # a frozen dataclass of param(...) fields: joins TrainConfig
    needs: ClassVar[tuple[str, ...]] = ()  # task methods it calls beyond the Task protocol
    columns: ClassVar[tuple[str, ...]] = ()  # its metrics.csv columns, filled from `logs()`
    predicts_baby: ClassVar[bool] = False  # the network carries a baby-move prediction head
    loss_inputs: ClassVar[tuple[str, ...]] = ()  # rollout columns `loss` reads, per minibatch
    judges: ClassVar[bool] = False  # has a reward model of transitions that `caring audit` can read

    def __init__(self, ctx: Context):
        self.ctx, self.config = ctx, ctx.config
        self.schedule = self.make_schedule()

    @classmethod
    def check(cls, config: Any) -> None:
        """Raise ConfigError for settings that cannot work together (called by TrainConfig.validate)."""

    @classmethod
    def label(cls, config: Any) -> str:
        """The method as tables name it (a stream with settings that matter may add them)."""
        return cls.name

    @classmethod
    def feedback(cls, config: Any, rows: list[dict[str, str]]) -> dict[str, int]:
        """The human-like feedback a finished run cost ("demo_episodes", "preference_labels"), from its
        config and its metrics.csv rows (a sweep reports it beside the results)."""
        return {}

    def make_schedule(self) -> BetaSchedule:
        """β₁'s weaning: by default the configured schedule from `beta0`."""
        c = self.config
        return BetaSchedule(
            kind=c.beta_schedule,
            beta0=c.beta0,
            beta_min=min(c.beta_min, c.beta0),
            horizon=c.beta_horizon,
            kappa=c.beta_kappa,
            harm_threshold=c.harm_threshold,
            relative=c.harm_threshold_relative,
        )

    def prepare(self, log: Any = print) -> None:
        """Before the first update, fresh or resumed (RLMF fits M, or loads the M it fitted)."""

    def record(self, step: Transition) -> dict[str, torch.Tensor]:
        """What the stream keeps of one rollout step: `r_mat`, its payment (B, A), and any other
        per-step column (B, A, ...) its after-rollout hook or loss reads. Nothing: r_mat stays 0."""
        return {}

    def after_rollout(self, buf: dict[str, torch.Tensor], update: int, scheduled: int) -> None:
        """Between the rollout and the update (0-based `update` of `scheduled` β₁-weighted updates;
        later ones are weaned): may rewrite buf["r_mat"] (T, N)."""

    def loss(self, features: torch.Tensor, rows: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """An extra loss on a minibatch: trunk features (M, hidden) and the `loss_inputs` columns."""
        return None

    def logs(self) -> dict[str, float]:
        """This update's values of `columns` (missing ones are written empty)."""
        return {}

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors a resumed run needs (checkpointed with the trainer's)."""
        return {}

    def meta(self) -> dict[str, Any]:
        """JSON a resumed run needs."""
        return {}

    def load(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore what `state` and `meta` saved."""

    @classmethod
    def judge(cls, run: Path, config: Any, core: Any, task: Task) -> Callable[..., torch.Tensor]:
        """(`judges` streams) the judgement of transitions (obs, action, next_obs) -> (N,) of the run
        trained with settings `config`."""
        raise NotImplementedError(f"the {cls.name} stream has no judgement to audit")
