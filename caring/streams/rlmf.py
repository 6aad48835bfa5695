"""RLMF (spec 000): the maternal reward model M's judgement of each step plus its rules' penalty for
preventable catastrophes, paid on the second stream, with β₁ weaned by the configured schedule.

M is fitted before the first update from the task's demonstrations (`caring.maternal`) and held fixed;
its weights are the run's maternal.safetensors (and its report maternal.json). A run that finds them
loads them; one that does not (a fresh run, or one killed while fitting) fits M again, which is
deterministic, so a run ends the same however often it was interrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from caring.files import load_weights, write_atomic, write_json
from caring.maternal import MaternalModel, fit_maternal, maternal_reward
from caring.protocols import Task, Transition
from caring.streams.base import SecondStream
from worlds.config import param

WEIGHTS, REPORT = "maternal.safetensors", "maternal.json"


@dataclass(frozen=True)
class RLMFSettings:
    mat_penalty: float = param(5.0, "maternal rule penalty for a preventable catastrophe", 0.0, 1000.0)
    mat_learned_weight: float = param(
        0.1, "weight of M's learned judgement in r_mat (0: the rules alone)", 0.0, 100.0
    )
    demo_episodes: int = param(
        60,
        "expert episodes for the maternal model (the task sets the other demonstrations' multiples)",
        1,
        100000,
    )


def load_model(run: Path, core: Any, task: Task) -> MaternalModel:
    """The M a run fitted, frozen, on the core's device (one clear error if missing or misfit)."""
    model = load_weights(MaternalModel(core.obs_dim, task.n_actions), run / WEIGHTS, "this world's M")
    return model.to(core.device).requires_grad_(False)


class RLMF(SecondStream):
    name = "rlmf"
    Settings = RLMFSettings
    judges = True

    @classmethod
    def label(cls, config: Any) -> str:
        return f"rlmf, {config.beta_schedule}, learned M x {config.mat_learned_weight}"

    @classmethod
    def feedback(cls, config: Any, rows: list[dict[str, str]]) -> dict[str, int]:
        return {"demo_episodes": config.demo_episodes}

    def prepare(self, log: Any = print) -> None:
        ctx, c = self.ctx, self.config
        if (ctx.out / WEIGHTS).exists():
            self.model = load_model(ctx.out, ctx.core, ctx.task)
            return
        self.model, report = fit_maternal(ctx.task, ctx.core, c.demo_episodes, c.seed)
        write_json(ctx.out / REPORT, report)  # the weights are the commit point: written last
        weights = {k: v.cpu().contiguous() for k, v in self.model.state_dict().items()}
        write_atomic(ctx.out / WEIGHTS, save(weights))
        pair = next(k for k in report if k.startswith("heldout_expert_vs_"))
        versus = pair.removeprefix("heldout_expert_vs_").removesuffix("_accuracy")
        log(
            f"maternal model: held-out balanced accuracy {report['heldout_balanced_accuracy']:.3f} "
            f"(expert vs {versus} {report[pair]:.3f})"
        )

    def record(self, step: Transition) -> dict[str, torch.Tensor]:
        ctx, c = self.ctx, self.config
        rules = ctx.task.rules(ctx.core, step.before, step.out, c.mat_penalty)
        judged = ctx.task.judged(step.before)
        reward = maternal_reward(
            self.model, step.obs, step.action, step.out.obs, judged, rules, c.mat_learned_weight,
            ctx.task.learned_offset,
        )  # fmt: skip
        return {"r_mat": reward}

    @classmethod
    def judge(cls, run: Path, core: Any, task: Task) -> Callable[..., torch.Tensor]:
        """M's judgement sigmoid(M(s, a, s')) of transitions (obs, action, next_obs) -> (N,), for audits."""
        model = load_model(run, core, task)
        return lambda obs, action, next_obs: torch.sigmoid(model(obs, action, next_obs))
