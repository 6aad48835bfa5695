"""Kickstarting (Schmitt et al. 2018): PPO on the task, plus the cross-entropy between her policy and a
scripted teacher's action in each state she visits, weighted `teacher_coef` at the start and falling
linearly to 0 over the first `teacher_steps` agent-steps; after that she is plain PPO and whatever she
keeps of the teacher is hers. The teacher labels her own states (on-policy, as in DAgger), so she is
taught where her mistakes take her, not only where the teacher would go. Nothing is paid on the second
stream (β₁ = 0). The default teacher reads only what a mother senses and has no memory, as a network
reading one observation has none; a teacher with memory is allowed, but a resumed run's teacher starts
with none."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from caring.protocols import Transition
from caring.streams.ppo import PPO
from worlds.config import ConfigError, param


@dataclass(frozen=True)
class KickstartSettings:
    teacher: str = param(
        "expert-senses-no-memory",
        "kickstart: the scripted mother (`caring eval --policy` names) whose action in each state she "
        "visits she is taught",
    )
    teacher_coef: float = param(1.0, "kickstart: the teacher loss's weight at the start", 0.0, 100.0)
    teacher_steps: int = param(
        8_000_000, "kickstart: agent-steps over which the teacher's weight falls linearly to 0", 1, 10**12
    )


class Kickstart(PPO):
    name = "kickstart"
    Settings = KickstartSettings
    columns = ("teacher_weight", "teacher_loss", "teacher_agreement")
    loss_inputs = ("teacher_action",)

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        scripted = ctx.task.scripted
        if self.config.teacher not in scripted:
            raise ConfigError(
                f"teacher={self.config.teacher!r} is not a scripted mother of the {ctx.task.name} world; "
                f"choose from {', '.join(scripted)}"
            )
        self.teacher, self.taught = scripted[self.config.teacher](ctx.core), ctx.core
        self.update = 0  # the update the rollout being recorded feeds (0-based)
        self.loss_weight = self.weight(0)  # the teacher loss's weight in the update being made
        self._reset_tally()

    @classmethod
    def label(cls, config: Any) -> str:
        return f"kickstart from {config.teacher}, {config.teacher_steps:,} agent-steps"

    def weight(self, update: int) -> float:
        """The teacher loss's weight in a 0-based update (its agent-steps before it are the clock)."""
        c = self.config
        steps = update * c.worlds * self.ctx.core.M * c.rollout
        return c.teacher_coef * max(0.0, 1.0 - steps / c.teacher_steps)

    def _reset_tally(self) -> None:
        self.loss_sum: torch.Tensor | float = 0.0  # tensors once summed: no host sync per minibatch
        self.calls = 0
        self.agree: torch.Tensor | int = 0
        self.labelled: torch.Tensor | int = 0

    def record(self, step: Transition) -> dict[str, torch.Tensor]:
        """The teacher's action in each state the mothers acted in, (B, A); -1 once she is weaned (the
        teacher is not asked then: a scripted mother's planning costs more than a step of the world)."""
        if self.weight(self.update) == 0.0:
            return {"teacher_action": torch.full_like(step.action, -1)}
        if self.taught is not self.ctx.core:  # a curriculum's next stage: a world of other sizes
            self.teacher, self.taught = (
                self.ctx.task.scripted[self.config.teacher](self.ctx.core),
                self.ctx.core,
            )
        return {"teacher_action": self.teacher(step.before, step.obs)}

    def after_rollout(self, buf: dict[str, torch.Tensor], update: int, scheduled: int) -> None:
        self.loss_weight, self.update = self.weight(update), update + 1

    def loss(self, features: torch.Tensor, rows: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """weight x the mean cross-entropy of her policy against the teacher's actions. features (M,
        hidden), rows["teacher_action"] (M,), -1 where unlabelled."""
        weight = self.loss_weight
        if weight == 0.0:
            return None
        target = rows["teacher_action"]
        labelled = target >= 0
        logits = self.ctx.net.policy(features)
        nll = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
        loss = (nll * labelled).sum() / labelled.sum().clamp(min=1)
        self.loss_sum = self.loss_sum + loss.detach().double()
        self.calls += 1
        self.agree = self.agree + ((logits.argmax(-1) == target) & labelled).sum()
        self.labelled = self.labelled + labelled.sum()
        return weight * loss

    def logs(self) -> dict[str, float]:
        found = {"teacher_weight": self.loss_weight}
        labelled = int(self.labelled)
        if self.calls and labelled:
            found["teacher_loss"] = float(self.loss_sum) / self.calls
            found["teacher_agreement"] = int(self.agree) / labelled
        self._reset_tally()
        return found

    def meta(self) -> dict[str, Any]:
        return {"update": self.update}

    def load(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.update = int(meta.get("update", 0))
