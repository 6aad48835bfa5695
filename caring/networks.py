"""The mother's network: a perception trunk, a policy head and two value heads (task, maternal).

Every intervention site is a named `HookPoint` (an identity module, TransformerLens style): no in-place
ops and no module used at two sites, so captum and `analysis` hooks can cache, patch, ablate or steer
any of them. The trunk is an MLP over the flat uint8 observation: on this project's 2-core CPUs it is
about 7x cheaper per observation than a small CNN over the 7x7 view, and training speed is the budget.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class HookPoint(nn.Identity):
    """A named place in the forward pass where analysis attaches hooks; does nothing itself."""


def _layer(n_in: int, n_out: int, gain: float) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


POPART_RATE = 0.05  # weight of each update's returns in the running return moments
POPART_MIN_VAR = 1e-4  # floor of the return variance (a stream that pays nothing has none)
BABY_MOVES = 5  # stay, up, right, down, left: what a theory-of-mind head predicts the baby does next
KIN_MATCH_HIDDEN = 8  # hidden units of the marker comparator (`kin_match`)


# Which critics have a trunk of their own (the others' value heads sit on the policy's trunk).
OWN_TRUNKS = {"shared": (), "separate": ("task", "mat"), "mat-separate": ("mat",)}
CRITICS = tuple(OWN_TRUNKS)


class MotherNet(nn.Module):
    """obs (N, obs_dim) uint8 -> (policy logits (N, n_actions), V_task (N,), V_mat (N,)).

    `critics="separate"` gives each critic a trunk of its own (spec 000's separate Q_task and Q_mat), so
    neither critic's loss reaches the policy's trunk; "shared" puts both value heads on it;
    "mat-separate" keeps the task critic on it (its loss shapes the trunk, as in plain PPO) and gives
    the maternal critic, whose returns a large rule penalty makes large, a trunk of its own. With
    `value_norm` (PopArt: van Hasselt et al. 2016) the value heads predict returns in units of each
    stream's running return statistics (`value_stats`), which `caring.ppo.popart` updates while
    rescaling the heads so that the values the net returns do not jump; `forward` always returns values
    in reward units. With `predicts_baby` (theory of mind, spec 003) a prediction head on the policy's
    trunk gives logits of the baby's next move; the policy and value losses never reach it, and its loss
    reaches only it and the trunk.

    With `kin_match` = k > 0 a comparator with one set of weights reads each marker she sees or hears
    beside her own kin marker (`markers`: the world's `marker_inputs()`) and gives k features per marker
    (hook_kin_match, (N, markers * k)), which the policy's trunk reads after the observation: "is this
    baby mine?" is learnt once for every cell and cry instead of once per cell and colour by the first
    layer. The comparator's first layer reads her kin marker in its last three columns (what a re-write
    of her target edits). Critics with trunks of their own read the observation alone."""

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden: int = 256,
        predicts_baby: bool = False,
        critics: str = "shared",
        value_norm: bool = False,
        kin_match: int = 0,
        markers: tuple[list[int], list[list[int]]] | None = None,
    ):
        super().__init__()
        if critics not in CRITICS:
            raise ValueError(f"critics={critics!r} must be one of {CRITICS}")
        if kin_match and not markers:
            raise ValueError("kin_match needs the markers' places in the observation")
        self.obs_dim, self.n_actions, self.hidden = obs_dim, n_actions, hidden
        self.predicts_baby, self.critics, self.value_norm = predicts_baby, critics, value_norm
        self.kin_match, self.markers = kin_match, markers if kin_match else None
        self.hook_obs = HookPoint()
        matched = 0
        if kin_match:  # index tables move with the net but are not weights (not saved)
            kin, seen = markers
            self.register_buffer("kin_inputs", torch.tensor(kin), persistent=False)  # (3,)
            self.register_buffer("seen_inputs", torch.tensor(seen), persistent=False)  # (markers, 3)
            self.kin_match_1 = _layer(6, KIN_MATCH_HIDDEN, 2**0.5)
            self.kin_match_relu_1 = nn.ReLU()
            self.kin_match_2 = _layer(KIN_MATCH_HIDDEN, kin_match, 2**0.5)
            self.kin_match_relu_2 = nn.ReLU()
            self.hook_kin_match = HookPoint()
            matched = len(seen) * kin_match
        self.trunk_1 = _layer(obs_dim + matched, hidden, 2**0.5)
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
        if predicts_baby:  # created after the shared layers, so they start as in a network without it
            self.baby_move = _layer(hidden, BABY_MOVES, 0.01)
            self.hook_baby_move = HookPoint()
        for stream in OWN_TRUNKS[critics]:
            for i, n_in in ((1, obs_dim), (2, hidden)):
                setattr(self, f"critic_{stream}_{i}", _layer(n_in, hidden, 2**0.5))
                setattr(self, f"critic_{stream}_relu_{i}", nn.ReLU())
                setattr(self, f"hook_critic_{stream}_{i}", HookPoint())
        if value_norm:  # raw EMA moments per stream (task, mat) and the updates seen: see `value_stats`
            self.register_buffer("value_moment_1", torch.zeros(2))
            self.register_buffer("value_moment_2", torch.zeros(2))
            self.register_buffer("value_updates", torch.zeros(()))

    def blank(self) -> MotherNet:
        """An untrained network of the same architecture (drawn from torch's global generator)."""
        return MotherNet(
            self.obs_dim,
            self.n_actions,
            self.hidden,
            self.predicts_baby,
            self.critics,
            self.value_norm,
            self.kin_match,
            self.markers,
        )

    def trunk(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.hook_obs(obs.float() * (1.0 / 255.0))
        if self.kin_match:  # trunk_1 reads the observation, then the comparator's output
            weight, seen = self.trunk_1.weight, x.shape[1]  # (hidden, obs_dim + markers * kin_match)
            # two products, not one over their concatenation: backward then takes no gradient for
            # the observation's columns, most of the layer (a quarter of a PPO update's work)
            x = F.linear(x, weight[:, :seen], self.trunk_1.bias) + F.linear(
                self.match_kin(x), weight[:, seen:]
            )
        else:
            x = self.trunk_1(x)
        x = self.hook_trunk_1(self.relu_1(x))
        return self.hook_trunk_2(self.relu_2(self.trunk_2(x)))

    def match_kin(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled observation (N, obs_dim) -> (N, markers * kin_match): each marker read beside hers."""
        n, weight = x.shape[0], self.kin_match_1.weight  # weight (hidden, 6): seen marker, then kin marker
        seen = x.index_select(1, self.seen_inputs.flatten()).view(n, -1, 3)  # (N, markers, 3)
        kin = x.index_select(1, self.kin_inputs)  # (N, 3): the same for every marker, so read once
        h = seen @ weight[:, :3].T + (kin @ weight[:, 3:].T + self.kin_match_1.bias)[:, None]
        h = self.kin_match_relu_1(h)  # (N, markers, hidden)
        return self.hook_kin_match(self.kin_match_relu_2(self.kin_match_2(h)).flatten(1))

    def _critic_trunk(self, stream: str, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() * (1.0 / 255.0)
        for i in (1, 2):
            layer, relu = getattr(self, f"critic_{stream}_{i}"), getattr(self, f"critic_{stream}_relu_{i}")
            x = getattr(self, f"hook_critic_{stream}_{i}")(relu(layer(x)))
        return x

    def outputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """obs (N, obs_dim) -> (policy trunk features (N, hidden), logits, V_task, V_mat), the values in
        the critics' own units (normalised ones with `value_norm`): what a loss needs."""
        features = self.trunk(obs)
        logits = self.hook_logits(self.policy(features))
        own = OWN_TRUNKS[self.critics]
        task = self._critic_trunk("task", obs) if "task" in own else features
        mat = self._critic_trunk("mat", obs) if "mat" in own else features
        v_task = self.hook_value_task(self.value_task(task)).squeeze(-1)
        v_mat = self.hook_value_mat(self.value_mat(mat)).squeeze(-1)
        return features, logits, v_task, v_mat

    def value_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean (2,), std (2,)) of the (task, mat) returns the value heads are normalised by: the
        bias-corrected EMA moments, or (0, 1) without `value_norm` or before its first update."""
        if not self.value_norm:
            return torch.zeros(2, device=self.policy.weight.device), torch.ones(
                2, device=self.policy.weight.device
            )
        seen = self.value_updates
        correction = torch.where(seen > 0, 1.0 - (1.0 - POPART_RATE) ** seen, 1.0)
        mean = torch.where(seen > 0, self.value_moment_1 / correction, 0.0)
        second = torch.where(seen > 0, self.value_moment_2 / correction, 1.0)
        return mean, (second - mean.square()).clamp(min=POPART_MIN_VAR).sqrt()

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, logits, v_task, v_mat = self.outputs(obs)
        if self.value_norm:
            mean, std = self.value_stats()
            v_task, v_mat = v_task * std[0] + mean[0], v_mat * std[1] + mean[1]
        return logits, v_task, v_mat

    def baby_move_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Trunk features (N, hidden) -> (N, BABY_MOVES) logits of the baby's next move (theory-of-mind
        networks only)."""
        return self.hook_baby_move(self.baby_move(features))

    def predict_baby_move(self, obs: torch.Tensor) -> torch.Tensor:
        return self.baby_move_logits(self.trunk(obs))

    def hook_points(self) -> dict[str, HookPoint]:
        return {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}
