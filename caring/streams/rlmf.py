"""RLMF (spec 000): a maternal judgement of each step plus the rules' penalty for preventable
catastrophes, paid on the second stream, with β₁ weaned by the configured schedule.

The judgement is one of `caring.judges.JUDGES`: M's judgement of transitions (`caring.maternal`, spec
000's M(s, a, s')), a judgement of actions, or potential-based shaping from a judgement of states; a
maternal behaviour prior (a policy cloned from the demonstrations) may be paid beside it. Each model is
fitted before the first update from the task's demonstrations and held fixed; its weights are a file of
the run's (`MODELS`), with its report beside it. A run that finds them loads them; one that does not (a
fresh run, or one killed while fitting) fits them again, which is deterministic, so a run ends the same
however often it was interrupted. With `mat_death_charge` the rules also charge a mother who dies while
her baby lives: otherwise dying ends every cost she would pay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from caring.files import load_weights, write_atomic, write_json
from caring.judges import (
    JUDGES,
    JudgeNet,
    action_payment,
    fit_action_judge,
    fit_prior,
    fit_state_judge,
    prior_payment,
    shaping,
)
from caring.maternal import MaternalModel, demonstrate, fit_maternal, maternal_reward
from caring.protocols import Task, Transition
from caring.streams.base import SecondStream
from worlds.config import param

# model -> the run's file stem (weights .safetensors, report .json); "transition" keeps M's old names
MODELS = {"transition": "maternal", "action": "maternal_action", "potential": "maternal_potential",
          "prior": "prior"}  # fmt: skip


@dataclass(frozen=True)
class RLMFSettings:
    mat_penalty: float = param(5.0, "maternal rule penalty for a preventable catastrophe", 0.0, 1000.0)
    mat_learned_weight: float = param(
        0.1, "weight of the learned judgement in r_mat (0: the rules alone)", 0.0, 100.0
    )
    mat_judge: str = param(
        "transition",
        "the learned judgement: M(s, a, s') of transitions, a centred judgement of actions, or "
        "potential-based shaping from a judgement of states",
        choices=JUDGES,
    )
    mat_prior_weight: float = param(
        0.0, "weight of the behaviour prior log pi_BC(a|s) + log n in r_mat (0: none)", 0.0, 100.0
    )
    mat_death_charge: bool = param(
        False, "the rules charge the penalty once when a mother dies while her baby lives"
    )
    demo_episodes: int = param(
        60,
        "expert episodes for the maternal model (the task sets the other demonstrations' multiples)",
        1,
        100000,
    )


def _blank(model: str, core: Any, task: Task) -> nn.Module:
    if model == "transition":
        return MaternalModel(core.obs_dim, task.n_actions)
    return JudgeNet(core.obs_dim, 1 if model == "potential" else task.n_actions)


def load_model(run: Path, core: Any, task: Task, model: str = "transition") -> nn.Module:
    """A model a run fitted, frozen, on the core's device (one clear error if missing or misfit)."""
    path = run / f"{MODELS[model]}.safetensors"
    what = {"transition": "this world's M", "prior": "this world's behaviour prior"}.get(
        model, f"this world's {model} judge"
    )
    return load_weights(_blank(model, core, task), path, what).to(core.device).requires_grad_(False)


def models_of(config: Any) -> list[str]:
    """The models a run's settings need: its judgement, and the prior if it is paid."""
    return [config.mat_judge, *(["prior"] if config.mat_prior_weight else [])]


class RLMF(SecondStream):
    name = "rlmf"
    Settings = RLMFSettings
    judges = True

    @classmethod
    def label(cls, config: Any) -> str:
        judge = "learned M" if config.mat_judge == "transition" else f"{config.mat_judge} judge"
        prior = f", prior x {config.mat_prior_weight}" if config.mat_prior_weight else ""
        return f"rlmf, {config.beta_schedule}, {judge} x {config.mat_learned_weight}{prior}"

    @classmethod
    def feedback(cls, config: Any, rows: list[dict[str, str]]) -> dict[str, int]:
        return {"demo_episodes": config.demo_episodes}

    def prepare(self, log: Any = print) -> None:
        ctx, c = self.ctx, self.config
        demos = None
        self.models: dict[str, nn.Module] = {}
        for model in models_of(c):
            if (ctx.out / f"{MODELS[model]}.safetensors").exists():
                self.models[model] = load_model(ctx.out, ctx.core, ctx.task, model)
                continue
            demos = demos or demonstrate(ctx.task, ctx.core, c.demo_episodes, c.seed)
            fitted, report = self._fit(model, demos)
            write_json(ctx.out / f"{MODELS[model]}.json", report)  # the weights are the commit point
            weights = {k: v.cpu().contiguous() for k, v in fitted.state_dict().items()}
            write_atomic(ctx.out / f"{MODELS[model]}.safetensors", save(weights))
            self.models[model] = fitted
            log(_describe(model, report))

    def _fit(self, model: str, demos: Any) -> tuple[nn.Module, dict]:
        task, seed = self.ctx.task, self.config.seed
        if model == "transition":
            return fit_maternal(task, demos, seed)
        if model == "action":
            return fit_action_judge(demos, task.n_actions, seed)
        if model == "potential":
            return fit_state_judge(demos, seed)
        return fit_prior(demos, task.n_actions, seed)

    def record(self, step: Transition) -> dict[str, torch.Tensor]:
        ctx, c = self.ctx, self.config
        task = ctx.task
        reward = task.rules(ctx.core, step.before, step.out, c.mat_penalty, c.mat_death_charge)  # (B, A)
        judged = task.judged(step.before)
        B, A, D = step.obs.shape
        obs, action = step.obs.reshape(B * A, D), step.action.reshape(-1)
        with torch.no_grad():
            if c.mat_learned_weight and c.mat_judge == "transition":
                reward = maternal_reward(
                    self.models["transition"], step.obs, step.action, step.out.obs, judged, reward,
                    c.mat_learned_weight, task.learned_offset,
                )  # fmt: skip
            elif c.mat_learned_weight and c.mat_judge == "action":
                paid = action_payment(self.models["action"](obs), action).view(B, A)
                reward = reward + c.mat_learned_weight * paid * judged.float()
            elif c.mat_learned_weight:  # potential
                both = torch.cat([obs, step.out.obs.reshape(B * A, D)])  # one pass for Φ(s) and Φ(s')
                phi, phi_next = torch.sigmoid(self.models["potential"](both)).view(2, B, A)
                applies = judged & task.acting(step.before)
                applies_next = task.judged(step.after) & task.acting(step.after)
                reward = reward + c.mat_learned_weight * shaping(
                    phi, phi_next, applies, applies_next, c.gamma
                )
            if c.mat_prior_weight:
                paid = prior_payment(self.models["prior"](obs), action).view(B, A)
                reward = reward + c.mat_prior_weight * paid * judged.float()
        return {"r_mat": reward}

    @classmethod
    def judge(cls, run: Path, c: Any, core: Any, task: Task) -> Callable[..., torch.Tensor]:
        """The run's learned payment for transitions (obs, action, next_obs) -> (N,), for audits: M's
        sigmoid(M(s, a, s')), the action judge's centred payment or the shaping γΦ(s') − Φ(s) (as if
        the judgement applied on both sides), plus the weighted prior where it is paid."""
        models = {model: load_model(run, core, task, model) for model in models_of(c)}
        weight = c.mat_learned_weight or 1.0  # a rules-only run's judgement, as it would have paid

        def payment(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
            if c.mat_judge == "transition":
                paid = torch.sigmoid(models["transition"](obs, action, next_obs))
            elif c.mat_judge == "action":
                paid = action_payment(models["action"](obs), action)
            else:
                phi = models["potential"]
                paid = c.gamma * torch.sigmoid(phi(next_obs))[:, 0] - torch.sigmoid(phi(obs))[:, 0]
            paid = weight * paid
            if "prior" in models:
                paid = paid + c.mat_prior_weight * prior_payment(models["prior"](obs), action)
            return paid

        return payment


def _describe(model: str, report: dict) -> str:
    if model == "transition":
        pair = next(k for k in report if k.startswith("heldout_expert_vs_"))
        versus = pair.removeprefix("heldout_expert_vs_").removesuffix("_accuracy")
        return (
            f"maternal model: held-out balanced accuracy {report['heldout_balanced_accuracy']:.3f} "
            f"(expert vs {versus} {report[pair]:.3f})"
        )
    if model == "potential":
        return f"state judgement: held-out balanced accuracy {report['heldout_balanced_accuracy']:.3f}"
    return (
        f"{model}: its favourite action is the expert's in {report['heldout_top_action_is_experts']:.1%} of "
        f"held-out demonstration states ({report['heldout_top_action_is_experts_in_her_states']:.1%} of hers)"
    )
