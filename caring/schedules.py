"""β₁ schedules: how fast maternal feedback is weaned (seed 000 §2.3). α = 1 − β₁ always.

Every schedule is asked once per PPO update, `beta = schedule.step(update, harm)`, with `harm` the
fraction of this update's rollout steps in which some baby was harmed (the harm indicator H_t).
Time-based schedules ignore it; the adaptive one reacts to it. Their state round-trips through JSON so
resumed runs continue the same weaning.

`lagrangian` is PPO-Lagrangian's multiplier in the same slot: the second stream is then the harm cost,
λ rises by dual ascent while the harm rate exceeds the cost limit and falls (to 0 at least) below it,
and β₁ = λ / (1 + λ), so that A = (A_task − λ·A_cost) / (1 + λ).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from worlds.config import ConfigError

WEANING = ("constant", "linear", "exp", "adaptive")  # what `beta_schedule` may choose
SCHEDULES = (*WEANING, "lagrangian")


@dataclass
class BetaSchedule:
    """β₁(t) for t = update index.

    constant: β₁(0).  linear: β₁(0) → β₁_min over `horizon` updates.  exp: β₁(0)·exp(−κt), floored at
    β₁_min.  adaptive: starts at β₁(0); after `window` consecutive clean updates (harm ≤ `harm_threshold`)
    β₁ decays by `fast_decay` per update, otherwise by `slow_decay`; an update with harm steps it back up
    by `step_up`, never above β₁(0) (β₁ = 1 would leave no task signal, so self-care would be unlearned).
    With `relative` > 0 the clean threshold is that fraction of the first update's harm rate (the
    untrained policy's), not the absolute `harm_threshold`: a fixed threshold below what a learning
    mother reaches never lets β₁ decay.
    Always within [β₁_min, β₁(0)] ⊆ [0, 1].
    """

    kind: str = "adaptive"
    beta0: float = 1.0
    beta_min: float = 0.05
    horizon: int = 100  # linear: updates to reach beta_min
    kappa: float = 0.03  # exp: decay rate per update
    window: int = 5  # adaptive: clean updates before decaying fast
    harm_threshold: float = 0.0
    relative: float = 0.0  # adaptive: > 0 makes the threshold this fraction of `reference`
    fast_decay: float = 0.85
    slow_decay: float = 0.98
    step_up: float = 0.1
    cost_limit: float = 0.005  # lagrangian: the harm rate allowed
    lagrange_lr: float = 0.05  # lagrangian: dual-ascent step per unit of relative violation
    beta: float = field(default=-1.0)  # current value (adaptive state); -1 = not started
    clean_streak: int = 0
    multiplier: float = 0.0  # lagrangian: λ
    reference: float = -1.0  # adaptive, relative: the first update's harm rate; -1 = not seen yet

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ConfigError(f"unknown beta schedule {self.kind!r}; valid schedules: {', '.join(SCHEDULES)}")
        if not 0.0 <= self.relative <= 1.0:
            raise ConfigError(f"relative={self.relative} must be in [0, 1]")
        for name in ("beta0", "beta_min"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value} must be in [0, 1]")
        if self.beta_min > self.beta0:
            raise ConfigError(f"beta_min={self.beta_min} exceeds beta0={self.beta0}")
        if self.cost_limit <= 0 or self.lagrange_lr < 0:
            raise ConfigError("cost_limit must be > 0 and lagrange_lr >= 0")
        if self.horizon < 1 or self.kappa < 0 or self.window < 1:
            raise ConfigError("horizon and window must be >= 1 and kappa >= 0")
        for name in ("fast_decay", "slow_decay"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in (0, 1]")

    def value(self, t: int) -> float:
        """β₁ at update t for the time-based schedules (the adaptive one: its current value)."""
        if self.kind == "constant":
            return self.beta0
        if self.kind == "linear":
            frac = min(1.0, t / self.horizon)
            return self.beta0 + (self.beta_min - self.beta0) * frac
        if self.kind == "exp":
            return max(self.beta_min, self.beta0 * math.exp(-self.kappa * t))
        if self.kind == "lagrangian":
            return self.multiplier / (1.0 + self.multiplier)
        return self.beta0 if self.beta < 0 else self.beta

    def step(self, t: int, harm: float) -> float:
        """Advance to update t having seen harm fraction `harm` in its rollouts; returns β₁ for it."""
        if self.kind == "lagrangian":  # dual ascent on the relative violation of the cost limit
            violation = (harm - self.cost_limit) / self.cost_limit
            self.multiplier = max(0.0, self.multiplier + self.lagrange_lr * violation)
            return self.value(t)
        if self.kind != "adaptive":
            return self.value(t)
        beta = self.value(t)
        if self.relative and self.reference < 0:
            self.reference = harm
        if harm > self.threshold:
            self.clean_streak = 0
            beta = beta + self.step_up
        else:
            self.clean_streak += 1
            beta = beta * (self.fast_decay if self.clean_streak >= self.window else self.slow_decay)
        self.beta = min(self.beta0, max(self.beta_min, beta))
        return self.beta

    @property
    def threshold(self) -> float:
        """The harm rate an update may have and count as clean (adaptive)."""
        return self.relative * max(self.reference, 0.0) if self.relative else self.harm_threshold

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> BetaSchedule:
        return cls(**data)
