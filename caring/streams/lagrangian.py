"""PPO-Lagrangian, the standard safe-RL comparison: the second stream is minus the harm events, and
β₁ = λ/(1+λ) with λ raised by dual ascent while the harm rate exceeds `cost_limit` (so the policy
follows (A_task − λ·A_cost)/(1 + λ)); λ is logged."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from caring.protocols import Transition
from caring.schedules import BetaSchedule
from caring.streams.base import SecondStream
from worlds.config import param


@dataclass(frozen=True)
class LagrangianSettings:
    cost_limit: float = param(
        0.005, "ppo-lagrangian: harm rate allowed (harm events per baby-step, per walker-step)", 1e-6, 1.0
    )
    lagrange_lr: float = param(
        0.05, "ppo-lagrangian: multiplier step per update per unit of relative cost violation", 0.0, 100.0
    )


class Lagrangian(SecondStream):
    name = "ppo-lagrangian"
    Settings = LagrangianSettings
    columns = ("lagrange_multiplier",)

    def make_schedule(self) -> BetaSchedule:
        c = self.config
        return BetaSchedule(
            kind="lagrangian",
            beta0=c.beta0,
            beta_min=min(c.beta_min, c.beta0),
            cost_limit=c.cost_limit,
            lagrange_lr=c.lagrange_lr,
        )

    def record(self, step: Transition) -> dict[str, torch.Tensor]:
        harmed, exposed = self.ctx.task.harm(step.before, step.out)
        return {"r_mat": -(harmed & exposed).float()}  # one unit of cost per harm event

    def logs(self) -> dict[str, float]:
        return {"lagrange_multiplier": self.schedule.multiplier}
