"""Theory of mind (spec 003): PPO plus a head on the shared trunk that predicts the baby's next move,
trained only by its cross-entropy (weighted `tom_coef`). The behaviour heads never see that loss, and
with `tom_coef` = 0 the run is PPO's bit for bit. Its accuracy is logged."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from caring.protocols import Transition
from caring.streams.ppo import PPO
from worlds.config import param


@dataclass(frozen=True)
class TheoryOfMindSettings:
    tom_coef: float = param(1.0, "tom: weight of the baby-move prediction loss", 0.0, 100.0)


class TheoryOfMind(PPO):
    name = "tom"
    Settings = TheoryOfMindSettings
    needs = ("baby_moves",)
    columns = ("tom_loss", "tom_accuracy")
    predicts_baby = True
    loss_inputs = ("baby_move",)

    def __init__(self, ctx):
        super().__init__(ctx)
        self._reset_tally()

    def _reset_tally(self) -> None:
        self.loss_sum: torch.Tensor | float = 0.0  # a tensor once summed: no host sync per minibatch
        self.calls = 0
        self.correct: torch.Tensor | int = 0  # tensors once counted: no host sync per minibatch
        self.judged: torch.Tensor | int = 0

    def record(self, step: Transition) -> dict[str, torch.Tensor]:
        """The move each mother's baby made in this step (-1: none of its own to predict), (B, A)."""
        return {"baby_move": self.ctx.task.baby_moves(step.before, step.after)}

    def loss(self, features: torch.Tensor, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        """tom_coef x the mean cross-entropy of the baby-move head over the rows where the baby made a
        move of its own (0 if none). features (M, hidden), rows["baby_move"] (M,) in -1..4."""
        moves = rows["baby_move"]
        judged = moves >= 0
        target = moves.clamp(min=0)
        logits = self.ctx.net.baby_move_logits(features)
        nll = F.cross_entropy(logits, target, reduction="none")
        loss = (nll * judged).sum() / judged.sum().clamp(min=1)
        self.loss_sum = self.loss_sum + loss.detach().double()
        self.calls += 1
        self.correct = self.correct + ((logits.argmax(-1) == target) & judged).sum()
        self.judged = self.judged + judged.sum()
        return self.config.tom_coef * loss

    def logs(self) -> dict[str, float]:
        correct, judged = int(self.correct), int(self.judged)
        found = {"tom_accuracy": correct / judged if judged else float("nan")}
        if self.calls:
            found["tom_loss"] = float(self.loss_sum) / self.calls
        self._reset_tally()
        return found
