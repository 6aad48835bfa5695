"""RLHF and RLAIF (spec 004): the second stream pays a Bradley-Terry reward ensemble fitted to labels on
pairs of rollout segments, bought a few per update from a noisy synthetic annotator (rlhf) or a written
constitution (rlaif) out of a fixed budget (`caring.preferences`), with β₁ weaned as RLMF's.
Preference learning stops once weaning starts; the labels, the ensemble, its optimiser and its sampler
are checkpointed, so a resumed run buys the same labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from caring.preferences import PreferenceLearner
from caring.protocols import Transition
from caring.streams.base import Context, SecondStream
from worlds.config import ConfigError, param


@dataclass(frozen=True)
class PreferenceSettings:
    labels: int = param(2000, "rlhf/rlaif: preference labels bought over the run (the budget)", 1, 10**6)
    segment_length: int = param(16, "rlhf/rlaif: steps per compared segment", 1, 1000)
    reward_models: int = param(3, "rlhf/rlaif: members of the reward-model ensemble", 1, 64)
    query: str = param(
        "disagreement",
        "rlhf/rlaif: which pairs are labelled: the ensemble's most disputed of 4x as many, or random",
        choices=("disagreement", "random"),
    )
    reward_model_steps: int = param(16, "rlhf/rlaif: reward-model Adam steps per update", 0, 10000)
    annotator_temperature: float = param(
        1.0, "rlhf: Boltzmann temperature of the annotator over care-score gaps (0: rational)", 0.0, 1000.0
    )
    annotator_error: float = param(0.1, "rlhf: chance the annotator's label is flipped", 0.0, 0.5)


class RLHF(SecondStream):
    name = "rlhf"
    Settings = PreferenceSettings
    needs = ("care_facts",)
    columns = ("labels", "reward_model_loss", "reward_model_accuracy", "label_truth")

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        c = self.config
        self.learner = PreferenceLearner(
            self.name, ctx.core.obs_dim, ctx.task.n_actions, c.labels, c.segment_length, c.reward_models,
            c.query, c.annotator_temperature, c.annotator_error, c.seed + 2000, ctx.device,
        )  # fmt: skip
        self._logs: dict[str, float] = {}

    @classmethod
    def check(cls, config: Any) -> None:
        if config.segment_length > config.rollout:
            raise ConfigError(f"segment_length={config.segment_length} exceeds rollout={config.rollout}")
        if config.query == "disagreement" and config.reward_models < 2:
            raise ConfigError("query=disagreement needs reward_models >= 2 (one model cannot disagree)")

    @classmethod
    def feedback(cls, config: Any, rows: list[dict[str, str]]) -> dict[str, int]:
        counts = [r["labels"] for r in rows if r.get("labels")]  # weaned updates leave it empty
        return {"preference_labels": int(float(counts[-1])) if counts else 0}

    def record(self, step: Transition) -> dict[str, torch.Tensor]:
        """What annotators read of each step, and the steps the reward is paid on (her baby alive)."""
        ctx = self.ctx
        return {
            "facts": ctx.task.care_facts(ctx.core, step.before, step.out),
            "judged": ctx.task.judged(step.before).float(),
        }

    def after_rollout(self, buf: dict[str, torch.Tensor], update: int, scheduled: int) -> None:
        """Buy this update's labels from the rollout's segments, fit the ensemble on every label so far
        and pay its reward on the steps a baby lives (weaned: nothing is learned or paid)."""
        if update >= scheduled:
            self._logs = {}
            return
        learner = self.learner
        logs = dict.fromkeys(self.columns, float("nan"))
        logs |= learner.buy(buf, learner.due(update, scheduled), pool=4)
        logs["reward_model_loss"] = learner.fit(self.config.reward_model_steps)
        logs["labels"] = learner.count
        buf["r_mat"] = learner.reward(buf["obs"], buf["action"]) * buf["judged"]
        self._logs = logs

    def logs(self) -> dict[str, float]:
        return self._logs

    def state(self) -> dict[str, torch.Tensor]:
        return self.learner.state()

    def meta(self) -> dict[str, Any]:
        return {"opt_param_groups": self.learner.opt.state_dict()["param_groups"]}

    def load(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.learner.load(tensors, meta["opt_param_groups"])


class RLAIF(RLHF):
    """The same pipeline; the annotator is the written constitution (one principle per comparison)."""

    name = "rlaif"
