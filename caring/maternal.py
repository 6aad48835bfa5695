"""The maternal reward model M(s, a, s') of RLMF (seed 000 §2.4): demonstrations plus rules.

The learned part is a classifier of transitions, taken only where the task says M judges (in the
nursery: while the mother's own baby is alive, since before the birth all mothers behave alike).
Positives are the scripted expert's transitions. Negatives are of two kinds: whole behaviours that do
not care (the nursery's negligent and random mothers), and the "perturbed expert's" — the expert acting
in her own states but with, half the time, some other action than hers, labelled by whether the action
taken is the expert's: without them M could only learn which *states* carers are in. Even with them it
judges states more than actions (`caring audit`: in the nursery it pays "hold the baby and keep still"
nearly everywhere), which is why its weight against the rules is a setting. Its reward in the nursery is
sigmoid(logit) in (0, 1): never negative, because a negative judgement paid while the baby lives would
pay the mother to let it die sooner (in lava, where an episode ends early only at the goal, the same
logic makes it sigmoid(logit) - 1, never positive). The rules add a large penalty for catastrophic
outcomes. Which rules and which demonstrations is each world's task's choice (`caring.tasks`). M is
trained before the mother and held fixed while she trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caring.episodes import episode_keys, play
from caring.protocols import Policy, Task
from worlds import rng

_S_PERTURB = 303  # random stream of the perturbed expert (distinct from the world's and policies')

Labeller = Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]
"""(state, obs, actions (B, A)) -> labels (B, A) float: 1 where the action is a good carer's."""


@dataclass
class Transitions:
    obs: torch.Tensor  # (N, obs_dim) uint8
    action: torch.Tensor  # (N,) int64
    next_obs: torch.Tensor  # (N, obs_dim) uint8
    label: torch.Tensor  # (N,) float32: 1 = the expert's, 0 = not
    episode: torch.Tensor  # (N,) int64: which episode, for held-out splits by episode
    expert_action: torch.Tensor  # (N,) int64: what the expert would do in the state (-1: not asked)

    def __len__(self) -> int:
        return self.label.shape[0]

    def select(self, mask: torch.Tensor) -> Transitions:
        return Transitions(*(getattr(self, f)[mask] for f in Transitions.__dataclass_fields__))

    @staticmethod
    def cat(parts: list[Transitions]) -> Transitions:
        return Transitions(
            *(torch.cat([getattr(p, f) for p in parts]) for f in Transitions.__dataclass_fields__)
        )


class PerturbedExpert:
    """The expert, except that with probability `rate` a mother takes a uniformly drawn *other* action.
    `labels` marks which actions were the expert's own, so M learns to judge actions, not states."""

    def __init__(self, expert: Policy, n_actions: int, rate: float = 0.5):
        self.expert, self.n_actions, self.rate = expert, n_actions, rate

    def __call__(self, state: Any, obs: torch.Tensor) -> torch.Tensor:
        chosen = self.expert(state, obs)  # (B, A)
        A = chosen.shape[1]
        u = rng.uniform(state.key, state.t, _S_PERTURB, 2 * A).T  # (B, 2A)
        n = self.n_actions
        other = (chosen + 1 + (u[:, A:] * (n - 1)).long()) % n  # never the expert's
        return torch.where(u[:, :A] < self.rate, other, chosen)

    def labels(self, state: Any, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return (actions == self.expert(state, obs)).float()


@torch.inference_mode()
def collect(
    task: Task,
    core: Any,
    policy: Policy,
    episodes: int,
    seed: int,
    label: float | Labeller,
    expert: Policy | None = None,
) -> Transitions:
    """Every transition of `episodes` episodes that M would judge (in the nursery: the acting mother's
    own baby was alive), labelled `label` (a constant, or a function of the state and the actions),
    with what `expert` would have done in each state (-1 without one): the action-level judgements
    learn the expert's choice in every demonstration's states, not only in her own."""
    state, obs = core.reset(episode_keys(seed, episodes, core.device))
    parts = []
    episode = torch.arange(episodes, device=core.device)[:, None].expand(-1, core.A)
    for step in play(core, policy, state, obs):
        keep = task.judged(step.before) & task.acting(step.before)  # (B, A), before the step
        if keep.any():
            labels = (
                label(step.before, step.obs, step.action)
                if callable(label)
                else torch.full(step.action.shape, label, device=core.device)
            )
            obs, next_obs = step.obs[keep], step.out.obs[keep]
            asked = expert(step.before, step.obs)[keep] if expert else torch.full_like(step.action[keep], -1)
            parts.append(Transitions(obs, step.action[keep], next_obs, labels[keep], episode[keep], asked))
    return Transitions.cat(parts)


class MaternalModel(nn.Module):
    """M(s, a, s') -> logit that the transition is a good carer's (N,)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 256):
        super().__init__()
        self.obs_dim, self.n_actions = obs_dim, n_actions
        self.net = nn.Sequential(
            nn.Linear(2 * obs_dim + n_actions, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden // 2),
            nn.ReLU(),
            nn.Linear(hidden // 2, 1),
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        x = torch.cat(
            [obs.float() / 255.0, F.one_hot(action, self.n_actions).float(), next_obs.float() / 255.0], -1
        )
        return self.net(x).squeeze(-1)


def maternal_reward(
    model: MaternalModel,
    obs: torch.Tensor,
    action: torch.Tensor,
    next_obs: torch.Tensor,
    judged: torch.Tensor,
    rules: torch.Tensor,
    learned_weight: float = 1.0,
    offset: float = 0.0,
) -> torch.Tensor:
    """r_mat (B, A): `learned_weight` x (sigmoid(M) + offset) where `judged` (in the nursery: while the
    mother's baby is alive), plus the rules' penalty (weight 0: the rules alone, M is not even asked).
    The task picks the offset so that the judgement never pays for ending an episode the wrong way (see
    `Task.learned_offset`). obs/next_obs (B, A, obs_dim), action/judged/rules (B, A)."""
    if not learned_weight:
        return rules
    B, A, D = obs.shape
    with torch.no_grad():
        logit = model(obs.reshape(B * A, D), action.reshape(-1), next_obs.reshape(B * A, D)).view(B, A)
    return learned_weight * (torch.sigmoid(logit) + offset) * judged.float() + rules


def train_maternal(
    data: Transitions,
    n_actions: int,
    epochs: int = 6,
    batch: int = 512,
    lr: float = 1e-3,
    seed: int = 0,
    heldout_every: int = 5,
) -> tuple[MaternalModel, dict]:
    """Fit M on all episodes but every `heldout_every`-th, and report balanced accuracy on those."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    train, test = split_heldout(data, heldout_every)
    model = MaternalModel(data.obs.shape[1], n_actions).to(data.obs.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    positives = train.label.sum().clamp(min=1)
    pos_weight = (len(train) - positives) / positives  # balance the classes
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=gen).to(data.obs.device)
        for start in range(0, len(train), batch):
            idx = order[start : start + batch]
            logit = model(train.obs[idx], train.action[idx], train.next_obs[idx])
            loss = F.binary_cross_entropy_with_logits(logit, train.label[idx], pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    report = {
        "heldout_balanced_accuracy": balanced_accuracy(model, test),
        "train_transitions": len(train),
        "heldout_transitions": len(test),
    }
    return model, report


@dataclass
class Demonstrations:
    """What every maternal judgement learns from: each demonstration's transitions (with the expert's
    choice in each state), its label (a constant for whole behaviours, a Labeller for the perturbed
    expert's action contrasts) and its episodes."""

    parts: dict[str, Transitions]
    labels: dict[str, float | Labeller]
    episodes: dict[str, int]


def demonstrate(task: Task, core: Any, demo_episodes: int, seed: int) -> Demonstrations:
    """The task's demonstrations: `demo_episodes` of the expert, the others in the task's multiples."""
    demos = task.demonstrations(core, demo_episodes)  # name: (policy, episodes, label)
    expert = demos["expert"][0]
    parts = {
        name: collect(task, core, policy, n, seed + 1000 + i, label, expert)
        for i, (name, (policy, n, label)) in enumerate(demos.items())
    }
    labels = {name: label for name, (_, _, label) in demos.items()}
    return Demonstrations(parts, labels, {name: n for name, (_, n, _) in demos.items()})


def fit_maternal(task: Task, demos: Demonstrations, seed: int) -> tuple[MaternalModel, dict]:
    """Fit M on the demonstrations, frozen; the report adds M's balanced accuracy on the held-out
    episodes of the expert against the task's negative demonstration alone, and the episodes used."""
    parts = demos.parts
    model, report = train_maternal(Transitions.cat(list(parts.values())), task.n_actions, seed=seed)
    model.requires_grad_(False)
    negative = task.negative_demonstration
    pair = Transitions.cat([split_heldout(parts[name])[1] for name in ("expert", negative)])
    report[f"heldout_expert_vs_{negative}_accuracy"] = balanced_accuracy(model, pair)
    report["demonstrations"] = dict(demos.episodes)
    return model, report


def split_heldout(data: Transitions, every: int = 5) -> tuple[Transitions, Transitions]:
    """(training, held-out): every `every`-th episode is held out, whole."""
    heldout = data.episode % every == 0
    return data.select(~heldout), data.select(heldout)


@torch.no_grad()
def balanced_accuracy(model: MaternalModel, data: Transitions) -> float:
    """Mean of the accuracy on label-1 and on label-0 transitions."""
    pred = model(data.obs, data.action, data.next_obs) > 0
    truth = data.label > 0.5
    per_class = [(pred[truth == c] == c).float().mean() for c in (True, False) if (truth == c).any()]
    return float(torch.stack(per_class).mean())
