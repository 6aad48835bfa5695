"""Choice altruism (Franzmeyer et al. 2022): the second stream pays her baby's "choice", the share of
cells it could reach over dry floor in `choice_steps` moves, with constant β₁ = `beta0`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from caring.protocols import Transition
from caring.schedules import BetaSchedule
from caring.streams.base import SecondStream, constant_schedule
from worlds.config import param


@dataclass(frozen=True)
class ChoiceSettings:
    choice_steps: int = param(4, "choice: moves within which the baby's reachable cells count", 1, 64)


class Choice(SecondStream):
    name = "choice"
    Settings = ChoiceSettings
    needs = ("choice",)

    def make_schedule(self) -> BetaSchedule:
        return constant_schedule(self.config)

    def record(self, step: Transition) -> dict[str, torch.Tensor]:
        return {"r_mat": self.ctx.task.choice(self.ctx.core, step.after, self.config.choice_steps)}
