"""Kindness (spec 002): her own task critic evaluated on her baby's situation with their names switched
(the view re-centred on the baby, she shown where her baby would be, the baby the unseen self, her
energy and its hunger exchanged: the task's `perspective`), paid while her baby lives, with constant
β₁ = `beta0`. The seed's naive assumption, the other wants what I want, is built in."""

from __future__ import annotations

import torch

from caring.protocols import Transition
from caring.schedules import BetaSchedule
from caring.streams.base import SecondStream, constant_schedule


class Kindness(SecondStream):
    name = "kindness"
    needs = ("perspective",)

    def make_schedule(self) -> BetaSchedule:
        return constant_schedule(self.config)

    def record(self, step: Transition) -> dict[str, torch.Tensor]:
        ctx = self.ctx
        B, A = step.action.shape
        with torch.no_grad():
            _, v_baby, _ = ctx.net(ctx.task.perspective(ctx.core, step.after).reshape(B * A, -1))
        return {"r_mat": (v_baby * ctx.task.judged(step.after).reshape(B * A)).view(B, A)}
