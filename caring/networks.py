"""The mother's network: a perception trunk, a policy head and two value heads (task, maternal).

Every intervention site is a named `HookPoint` (an identity module, TransformerLens style): no in-place
ops and no module used at two sites, so captum and `analysis` hooks can cache, patch, ablate or steer
any of them. The trunk is an MLP over the flat uint8 observation: on this project's 2-core CPUs it is
about 7x cheaper per observation than a small CNN over the 7x7 view, and training speed is the budget.
"""

from __future__ import annotations

import torch
from torch import nn


class HookPoint(nn.Identity):
    """A named place in the forward pass where analysis attaches hooks; does nothing itself."""


def _layer(n_in: int, n_out: int, gain: float) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


BABY_MOVES = 5  # stay, up, right, down, left: what a theory-of-mind head predicts the baby does next


class MotherNet(nn.Module):
    """obs (N, obs_dim) uint8 -> (policy logits (N, n_actions), V_task (N,), V_mat (N,)).

    With `predicts_baby` (theory of mind, seed 003) a prediction head on the same trunk gives logits of
    the baby's next move; the policy and value losses never reach it, and its loss reaches only it and
    the trunk."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 256, predicts_baby: bool = False):
        super().__init__()
        self.obs_dim, self.n_actions, self.hidden = obs_dim, n_actions, hidden
        self.predicts_baby = predicts_baby
        self.hook_obs = HookPoint()
        self.trunk_1 = _layer(obs_dim, hidden, 2**0.5)
        self.relu_1 = nn.ReLU()
        self.hook_trunk_1 = HookPoint()
        self.trunk_2 = _layer(hidden, hidden, 2**0.5)
        self.relu_2 = nn.ReLU()
        self.hook_trunk_2 = HookPoint()
        self.policy = _layer(hidden, n_actions, 0.01)
        self.hook_logits = HookPoint()
        self.value_task = _layer(hidden, 1, 1.0)
        self.hook_value_task = HookPoint()
        self.value_mat = _layer(hidden, 1, 1.0)
        self.hook_value_mat = HookPoint()
        if predicts_baby:  # created last, so the other layers start as in a network without it
            self.baby_move = _layer(hidden, BABY_MOVES, 0.01)
            self.hook_baby_move = HookPoint()

    def trunk(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.hook_obs(obs.float() * (1.0 / 255.0))
        x = self.hook_trunk_1(self.relu_1(self.trunk_1(x)))
        return self.hook_trunk_2(self.relu_2(self.trunk_2(x)))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.heads(self.trunk(obs))

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Trunk features (N, hidden) -> (policy logits, V_task, V_mat)."""
        logits = self.hook_logits(self.policy(features))
        v_task = self.hook_value_task(self.value_task(features)).squeeze(-1)
        v_mat = self.hook_value_mat(self.value_mat(features)).squeeze(-1)
        return logits, v_task, v_mat

    def baby_move_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Trunk features (N, hidden) -> (N, BABY_MOVES) logits of the baby's next move (theory-of-mind
        networks only)."""
        return self.hook_baby_move(self.baby_move(features))

    def predict_baby_move(self, obs: torch.Tensor) -> torch.Tensor:
        return self.baby_move_logits(self.trunk(obs))

    def hook_points(self) -> dict[str, HookPoint]:
        return {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}
