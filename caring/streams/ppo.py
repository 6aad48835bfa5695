"""Plain PPO, the baseline every method is compared with: β₁ = 0, nothing paid on the second stream
(its critic is still trained, on zeros, and never used)."""

from __future__ import annotations

from caring.schedules import BetaSchedule
from caring.streams.base import SecondStream


class PPO(SecondStream):
    name = "ppo"

    def make_schedule(self) -> BetaSchedule:
        return BetaSchedule(kind="constant", beta0=0.0, beta_min=0.0)
