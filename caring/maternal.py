"""The maternal reward model M(s, a, s') of RLMF (seed 000 §2.4): demonstrations plus rules.

The learned part is a classifier of transitions: the scripted expert's (label 1) against the negligent
and random mothers' (label 0), taken only while the mother's own baby is alive (M judges care, and
before the birth the three behave alike). Its reward is 2·sigmoid(logit) − 1 in (−1, 1). The rules add a
large penalty for catastrophic outcomes the mother could have prevented: her baby drowning, being bitten
while a predator was within her reach and she did not shoo it, or starving beside her while she had the
energy to feed it. M is trained before the mother and held fixed while she trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from caring.evaluate import Policy, episode_keys
from worlds.nursery.core import N_ACTIONS, NurseryCore


@dataclass
class Transitions:
    obs: torch.Tensor  # (N, obs_dim) uint8
    action: torch.Tensor  # (N,) int64
    next_obs: torch.Tensor  # (N, obs_dim) uint8
    label: torch.Tensor  # (N,) float32: 1 = the expert's, 0 = not
    episode: torch.Tensor  # (N,) int64: which episode, for held-out splits by episode

    def __len__(self) -> int:
        return self.label.shape[0]

    def select(self, mask: torch.Tensor) -> Transitions:
        return Transitions(
            self.obs[mask], self.action[mask], self.next_obs[mask], self.label[mask], self.episode[mask]
        )

    @staticmethod
    def cat(parts: list[Transitions]) -> Transitions:
        return Transitions(
            *(torch.cat([getattr(p, f) for p in parts]) for f in Transitions.__dataclass_fields__)
        )


@torch.inference_mode()
def collect(core: NurseryCore, policy: Policy, episodes: int, seed: int, label: float) -> Transitions:
    """Every transition of `episodes` episodes in which the acting mother's own baby was alive."""
    state, obs = core.reset(episode_keys(seed, episodes, core.device))
    parts = []
    episode = torch.arange(episodes, device=core.device)[:, None].expand(-1, core.A)
    for _ in range(core.config.max_cycles):
        actions = policy(state, obs)
        keep = (state.baby_alive & state.mother_alive).T  # (B, A), before the step
        state, out = core.step(state, actions)
        if keep.any():
            labels = torch.full((int(keep.sum()),), label, device=core.device)
            parts.append(Transitions(obs[keep], actions[keep], out.obs[keep], labels, episode[keep]))
        obs = out.obs
    return Transitions.cat(parts)


class MaternalModel(nn.Module):
    """M(s, a, s') -> logit that the transition is a good carer's (N,)."""

    def __init__(self, obs_dim: int, hidden: int = 256):
        super().__init__()
        self.obs_dim = obs_dim
        self.net = nn.Sequential(
            nn.Linear(2 * obs_dim + N_ACTIONS, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden // 2),
            nn.ReLU(),
            nn.Linear(hidden // 2, 1),
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        x = torch.cat(
            [obs.float() / 255.0, F.one_hot(action, N_ACTIONS).float(), next_obs.float() / 255.0], -1
        )
        return self.net(x).squeeze(-1)


def rule_penalty(events: dict[str, torch.Tensor], energy_ok: torch.Tensor, penalty: float) -> torch.Tensor:
    """(B, A) penalty for catastrophes the mother could have prevented this step (events are (B, A))."""
    drowned = events["baby_harm_hazard"] > 0
    bitten_unguarded = (
        (events["baby_harm_predator"] > 0) & (events["could_guard"] > 0) & (events["guarded"] == 0)
    )
    starved_beside = (events["baby_harm_hunger"] > 0) & (events["baby_distance"] <= 1) & energy_ok
    return -penalty * (drowned | bitten_unguarded | starved_beside).float()


def maternal_reward(
    model: MaternalModel,
    obs: torch.Tensor,
    action: torch.Tensor,
    next_obs: torch.Tensor,
    baby_was_alive: torch.Tensor,
    events: dict[str, torch.Tensor],
    energy_ok: torch.Tensor,
    penalty: float = 5.0,
) -> torch.Tensor:
    """r_mat (B, A): the learned judgement while the mother's baby is alive, plus the rules.
    obs/next_obs (B, A, obs_dim), action/baby_was_alive/energy_ok (B, A)."""
    B, A, D = obs.shape
    with torch.no_grad():
        logit = model(obs.reshape(B * A, D), action.reshape(-1), next_obs.reshape(B * A, D)).view(B, A)
    learned = (2.0 * torch.sigmoid(logit) - 1.0) * baby_was_alive.float()
    return learned + rule_penalty(events, energy_ok, penalty)


def train_maternal(
    data: Transitions,
    epochs: int = 6,
    batch: int = 512,
    lr: float = 1e-3,
    seed: int = 0,
    heldout_every: int = 5,
) -> tuple[MaternalModel, dict]:
    """Fit M on all episodes but every `heldout_every`-th, and report balanced accuracy on those."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    heldout = data.episode % heldout_every == 0
    train, test = data.select(~heldout), data.select(heldout)
    model = MaternalModel(data.obs.shape[1]).to(data.obs.device)
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


@torch.no_grad()
def balanced_accuracy(model: MaternalModel, data: Transitions) -> float:
    """Mean of the accuracy on label-1 and on label-0 transitions."""
    pred = model(data.obs, data.action, data.next_obs) > 0
    truth = data.label > 0.5
    per_class = [(pred[truth == c] == c).float().mean() for c in (True, False) if (truth == c).any()]
    return float(torch.stack(per_class).mean())
