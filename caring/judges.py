"""Maternal judgements of actions, beside M's judgement of transitions (`caring.maternal`).

`caring audit` found that M(s, a, s') judges *states*: in the expert's own states it ranks her action
first about half the time and pays "hold the baby and keep still" nearly everywhere. Three judgements
that cannot pay for a state alone, each learned from the same demonstrations (the expert's choice is
asked in every demonstration's states, DAgger-style, so a judgement also knows what to do in the states
a careless mother reaches):

- **action** (`mat_judge="action"`): one output per action, each a classifier of "this is the expert's
  action here" (one-vs-rest); the payment is the taken action's logit minus the logits' mean under the
  judge's own softmax: zero on average over actions in every state, so being in a state pays nothing.
- **potential** (`mat_judge="potential"`): Φ(s) = sigmoid of a classifier of carers' states (the
  expert's against the whole-behaviour negatives); the payment is γΦ(s') − Φ(s) (Ng, Harada & Russell
  1999), which sums over an episode to γ^T Φ(s_T) − Φ(s_0) and so cannot change which policy is best,
  only how fast it is found. Φ is 0 where the judgement does not apply (no living baby, a dead mother).
- **prior** (`mat_prior_weight`): a policy cloned from the expert's demonstrations; the payment is the
  taken action's log-probability under it, measured from the uniform policy's (log π_BC(a|s) + log n),
  so that, like RLHF's KL to a reference policy, it pulls towards the demonstrations, and, being positive
  in expectation under the clone, pays no mother to end her baby's life sooner.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from caring.maternal import Demonstrations, Transitions, split_heldout

JUDGES = ("transition", "action", "potential")  # what `mat_judge` may choose


class JudgeNet(nn.Module):
    """obs (N, obs_dim) uint8 -> (N, outputs) logits: an action judge or a cloned policy (one output per
    action), or a state judge (one output)."""

    def __init__(self, obs_dim: int, outputs: int, hidden: int = 256):
        super().__init__()
        self.obs_dim, self.outputs = obs_dim, outputs
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
            nn.Linear(hidden // 2, outputs),
        )  # fmt: skip

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float() / 255.0)


def action_payment(logits: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """logits (N, n), action (N,) -> the taken action's logit minus the mean logit under softmax(logits)
    (N,): zero in expectation over actions drawn from the judge's own distribution."""
    centre = (logits.softmax(-1) * logits).sum(-1)
    return logits.gather(1, action[:, None])[:, 0] - centre


def prior_payment(logits: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """logits (N, n) of the cloned policy, action (N,) -> log π_BC(a|s) + log n (N,)."""
    return logits.log_softmax(-1).gather(1, action[:, None])[:, 0] + math.log(logits.shape[-1])


def shaping(
    potential: torch.Tensor, next_potential: torch.Tensor, applies: torch.Tensor, applies_next: torch.Tensor,
    gamma: float,
) -> torch.Tensor:  # fmt: skip
    """γΦ(s') − Φ(s), each Φ taken as 0 where its judgement does not apply; all (B, A)."""
    return gamma * next_potential * applies_next.float() - potential * applies.float()


# ----------------------------------------------------------------------------- fitting


def _rows(demos: Demonstrations, names: list[str]) -> Transitions:
    data = Transitions.cat([demos.parts[name] for name in names])
    return data.select(data.expert_action >= 0)


def _fit(
    model: JudgeNet, inputs: torch.Tensor, loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    seed: int, epochs: int = 6, batch: int = 512, lr: float = 1e-3,
) -> JudgeNet:  # fmt: skip
    """Minimise `loss_of(logits, row indices)` over shuffled minibatches of `inputs` (N, obs_dim)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(inputs.shape[0], generator=gen).to(inputs.device)
        for start in range(0, inputs.shape[0], batch):
            idx = order[start : start + batch]
            loss = loss_of(model(inputs[idx]), idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.requires_grad_(False)


@torch.no_grad()
def _agreement(model: JudgeNet, data: Transitions) -> float:
    """How often the model's favourite action is the expert's."""
    if not len(data):
        return float("nan")
    return float((model(data.obs).argmax(-1) == data.expert_action).float().mean())


def fit_action_judge(demos: Demonstrations, n_actions: int, seed: int) -> tuple[JudgeNet, dict]:
    """One-vs-rest classifiers of the expert's action, in every demonstration's states (a state's other
    actions are its negatives, weighted so each state's positive and negatives count alike)."""
    train, test = split_heldout(_rows(demos, list(demos.parts)))
    torch.manual_seed(seed)
    model = JudgeNet(train.obs.shape[1], n_actions).to(train.obs.device)
    target = F.one_hot(train.expert_action, n_actions).float()
    weight = torch.tensor(float(n_actions - 1), device=train.obs.device)

    def loss_of(logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target[idx], pos_weight=weight)

    model = _fit(model, train.obs, loss_of, seed)
    expert_test = split_heldout(_rows(demos, ["expert"]))[1]
    return model, _report(train, test, expert_test, _agreement(model, test), _agreement(model, expert_test))


def fit_prior(demos: Demonstrations, n_actions: int, seed: int) -> tuple[JudgeNet, dict]:
    """Behaviour cloning: the expert's action in the expert's and the perturbed expert's states."""
    names = [name for name in demos.parts if "expert" in name]
    train, test = split_heldout(_rows(demos, names))
    torch.manual_seed(seed)
    model = JudgeNet(train.obs.shape[1], n_actions).to(train.obs.device)

    def loss_of(logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, train.expert_action[idx])

    model = _fit(model, train.obs, loss_of, seed)
    expert_test = split_heldout(_rows(demos, ["expert"]))[1]
    return model, _report(train, test, expert_test, _agreement(model, test), _agreement(model, expert_test))


def fit_state_judge(demos: Demonstrations, seed: int) -> tuple[JudgeNet, dict]:
    """A classifier of carers' states: the expert's (label 1) against the whole behaviours that do not
    care (constant label 0); the perturbed expert's states, half a carer's, are left out."""
    whole = {name: label for name, label in demos.labels.items() if not callable(label)}
    data = Transitions.cat([
        dataclasses.replace(demos.parts[name], label=torch.full_like(demos.parts[name].label, float(label)))
        for name, label in whole.items()
    ])  # fmt: skip
    train, test = split_heldout(data)
    torch.manual_seed(seed)
    model = JudgeNet(train.obs.shape[1], 1).to(train.obs.device)
    positives = train.label.sum().clamp(min=1)
    weight = (len(train) - positives) / positives

    def loss_of(logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits[:, 0], train.label[idx], pos_weight=weight)

    model = _fit(model, train.obs, loss_of, seed)
    with torch.no_grad():
        pred, truth = model(test.obs)[:, 0] > 0, test.label > 0.5
    per_class = [float((pred[truth == c] == c).float().mean()) for c in (True, False) if (truth == c).any()]
    return model, {
        "heldout_balanced_accuracy": sum(per_class) / max(1, len(per_class)),
        "train_states": len(train),
        "heldout_states": len(test),
    }


def _report(
    train: Transitions, test: Transitions, expert_test: Transitions, agree: float, own: float
) -> dict:
    return {
        "heldout_top_action_is_experts": agree,
        "heldout_top_action_is_experts_in_her_states": own,
        "train_states": len(train),
        "heldout_states": len(test),
        "heldout_expert_states": len(expert_test),
    }
