"""Care learned from compared segments (seed 004): RLHF (Christiano et al. 2017) and RLAIF (a constitution).

An annotator compares two segments of mothers' lives with their babies and says which shows more care;
a Bradley-Terry reward model (an ensemble of small MLPs over observation and action) is fitted to its
labels, and its reward on the steps a baby lives is the second stream PPO learns from, weighed by β₁ as
RLMF's maternal stream is. Labels are bought a few per update, out of a fixed budget spread evenly over
the scheduled updates, from pairs of segments of the latest rollout (the ensemble's most disputed pairs
when `query` is "disagreement").

Annotators never see the reward model's inputs: they read each step's *care facts* (`FACTS`, from the
task) and score a segment as a weighted sum of them, so the two annotators differ by their weights only:
- rlhf: one hidden care score (`CARE_SCORE`: the baby's welfare and safety), a Boltzmann-rational choice
  P(A) = σ((score_A − score_B) / temperature), then the label flipped with probability `error`;
- rlaif: the `CONSTITUTION`, written principles each with its own weights; one principle is drawn per
  comparison and prefers the higher score (ties: a fair coin).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from caring.files import load_optimizer, optimizer_tensors

FACTS = ("alive", "harmed", "hunger", "distance", "fed", "guarded")  # per step, per mother: see the task
STORED = ("obs", "action", "mask", "paid", "facts")  # a Segments' fields, in order


@dataclass(frozen=True)
class Principle:
    text: str
    weights: dict[str, float]  # fact -> weight; the principle's score of a step is the weighted sum


# The hidden care score of the rlhf annotator: her baby's welfare (alive, not hungry) and safety (harm).
CARE_SCORE = Principle("the baby's welfare and safety", {"alive": 1.0, "harmed": -2.0, "hunger": -0.5})

CONSTITUTION = (
    Principle("Keep your baby alive.", {"alive": 1.0}),
    Principle("Never let your baby come to harm.", {"harmed": -1.0}),
    Principle("A baby should not go hungry.", {"hunger": -1.0}),
    Principle("Stay close to your baby.", {"distance": -1.0}),
    Principle("Feed your baby when it needs it.", {"fed": 1.0}),
    Principle("Drive predators away from your baby.", {"guarded": 1.0}),
)


def weight_vector(principle: Principle, device: torch.device | str = "cpu") -> torch.Tensor:
    """(F,) the principle's weights in `FACTS` order."""
    return torch.tensor([principle.weights.get(f, 0.0) for f in FACTS], device=device)


def segment_scores(facts: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """facts (..., L, F), mask (..., L), weights (F,) or (..., F) -> (...,) each segment's score: the mean
    over its counted steps times L, so a segment an episode's end cut short is scored as if whole (a
    plain sum would favour it under principles that only subtract)."""
    per_step = (facts * weights.unsqueeze(-2)).sum(-1)
    return (per_step * mask).sum(-1) / mask.sum(-1).clamp(min=1) * mask.shape[-1]


def boltzmann_labels(
    score_a: torch.Tensor, score_b: torch.Tensor, temperature: float, error: float, gen: torch.Generator
) -> torch.Tensor:
    """(K,) 1.0 where the annotator prefers A: Boltzmann-rational in the score gap, then wrong with
    probability `error` (a slip: the label flipped). temperature 0 is a perfectly rational annotator."""
    gap = score_a - score_b
    if temperature > 0:
        p_a = torch.sigmoid(gap / temperature)
    else:
        p_a = (gap > 0).float() + 0.5 * (gap == 0).float()
    draws = torch.rand(2, *gap.shape, generator=gen, device=gap.device)
    choice = (draws[0] < p_a).float()
    return torch.where(draws[1] < error, 1.0 - choice, choice)


def constitution_labels(
    facts: torch.Tensor, mask: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """facts (K, 2, L, F), mask (K, 2, L) -> (labels (K,), principle drawn per comparison (K,))."""
    table = torch.stack([weight_vector(p, facts.device) for p in CONSTITUTION])  # (P, F)
    drawn = torch.randint(len(CONSTITUTION), facts.shape[:1], generator=gen, device=facts.device)
    scores = segment_scores(facts, mask, table[drawn][:, None])  # (K, 2)
    gap = scores[:, 0] - scores[:, 1]
    coin = (torch.rand(gap.shape, generator=gen, device=gap.device) < 0.5).float()
    return torch.where(gap == 0, coin, (gap > 0).float()), drawn


def preference_loss(return_a: torch.Tensor, return_b: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry: P(A ≻ B) = σ(R_A − R_B); the mean negative log-likelihood of the labels (1: A)."""
    return F.binary_cross_entropy_with_logits(return_a - return_b, label)


class RewardEnsemble(nn.Module):
    """K reward models r_k(obs, action), each an MLP over [obs/255, one-hot action] with two hidden
    layers, run as batched products: the first layer of every member is one matrix product over the
    observation (plus the action's row), the rest per member. Members differ by initialisation and by
    the minibatches they are fitted on."""

    def __init__(self, obs_dim: int, n_actions: int, members: int = 3, hidden: int = 64):
        super().__init__()
        self.members, self.hidden = members, hidden

        def layer(n_in: int, n_out: int) -> nn.Parameter:  # nn.Linear's default init, per member
            w = torch.empty(members, n_out, n_in)
            for k in range(members):
                nn.init.kaiming_uniform_(w[k], a=5**0.5)
            return nn.Parameter(w.transpose(1, 2).contiguous())  # (K, n_in, n_out)

        first = layer(obs_dim + n_actions, hidden)
        self.w_obs = nn.Parameter(first[:, :obs_dim].permute(1, 0, 2).reshape(obs_dim, members * hidden))
        self.w_action = nn.Parameter(first[:, obs_dim:].detach().clone())  # (K, n_actions, hidden)
        self.w_hidden, self.w_out = layer(hidden, hidden), layer(hidden, 1)
        self.biases = nn.ParameterList(torch.zeros(members, 1, n) for n in (hidden, hidden, 1))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """obs (1, M, obs_dim) uint8 with action (1, M) for every member, or (K, M, ...) one batch per
        member -> (K, M) each member's reward."""
        K, h = self.members, self.hidden
        x = obs.float() * (1.0 / 255.0)
        if obs.shape[0] == 1:
            h1 = (x[0] @ self.w_obs).view(-1, K, h).transpose(0, 1)  # (K, M, h)
        else:
            h1 = torch.bmm(x, self.w_obs.view(-1, K, h).transpose(0, 1))
        chosen = F.one_hot(action, self.w_action.shape[1]).float().expand(K, -1, -1)  # (K, M, n_actions)
        h1 = torch.relu(h1 + torch.bmm(chosen, self.w_action) + self.biases[0])  # a product, not a gather:
        # a gather's backward scatter-adds, which is not bit-reproducible across threads on the CPU
        h2 = torch.relu(torch.baddbmm(self.biases[1], h1, self.w_hidden))
        return torch.baddbmm(self.biases[2], h2, self.w_out).squeeze(-1)

    def segment_returns(self, obs: torch.Tensor, action: torch.Tensor, paid: torch.Tensor) -> torch.Tensor:
        """obs (S, L, D), action (S, L), paid (S, L) -> (K, S): each member's reward summed over the
        steps the policy would be paid it."""
        S, L = action.shape
        r = self(obs.reshape(1, S * L, -1), action.reshape(1, S * L)).view(-1, S, L)
        return (r * paid).sum(-1)


@dataclass
class Segments:
    """Labelled or candidate segment pairs: obs (K, 2, L, D) uint8, action (K, 2, L), facts (K, 2, L, F),
    mask (K, 2, L): the steps an annotator reads (until her episode ends: her baby's death and what
    follows count), paid (K, 2, L): the steps the policy is paid the learned reward on (her baby alive)."""

    obs: torch.Tensor
    action: torch.Tensor
    mask: torch.Tensor
    paid: torch.Tensor
    facts: torch.Tensor

    def fields(self) -> tuple[torch.Tensor, ...]:
        return (self.obs, self.action, self.mask, self.paid, self.facts)

    def __len__(self) -> int:
        return self.action.shape[0]

    def take(self, index: torch.Tensor) -> Segments:
        return Segments(*(x[index] for x in self.fields()))


def candidate_segments(buf: dict[str, torch.Tensor], length: int) -> Segments:
    """Every non-overlapping window of `length` steps of one mother in the rollout that starts while her
    baby lives and she acts; steps after her episode ends inside the window (her death included) are
    masked out. buf: obs (T, N, D), action, judged, live, done (T, N), facts (T, N, F) -> single
    segments, pair axis of size 1 (K, 1, L, ...)."""
    T = buf["action"].shape[0]
    starts = torch.arange(0, T - length + 1, length, device=buf["action"].device)
    window = starts[:, None] + torch.arange(length, device=starts.device)  # (W, L)

    def cut(x: torch.Tensor) -> torch.Tensor:  # (T, N, ...) -> (W*N, L, ...)
        y = x[window]  # (W, L, N, ...)
        return y.transpose(1, 2).reshape(-1, length, *x.shape[2:])

    done = cut(buf["done"])
    over = torch.cumsum(done, 1) - done > 0  # an earlier step of the window ended the episode
    acting = cut(buf["live"]) > 0
    paid = (cut(buf["judged"]) > 0) & acting & ~over
    keep = paid[:, 0]
    return Segments(
        cut(buf["obs"])[keep][:, None],
        cut(buf["action"])[keep][:, None],
        (acting & ~over)[keep].float()[:, None],
        paid[keep].float()[:, None],
        cut(buf["facts"])[keep][:, None],
    )


def pair_up(single: Segments, n_pairs: int, gen: torch.Generator) -> Segments:
    """n_pairs random pairs of distinct segments (empty if fewer than two)."""
    S, device = len(single), single.action.device
    if S < 2:
        a = b = torch.zeros(0, dtype=torch.long, device=device)
    else:
        a = torch.randint(S, (n_pairs,), generator=gen, device=device)
        b = (a + torch.randint(1, S, (n_pairs,), generator=gen, device=device)) % S
    return Segments(*(torch.cat([x[a], x[b]], 1) for x in single.fields()))


class PreferenceLearner:
    """The labels bought so far, the annotator and the reward ensemble fitted to the labels.

    `annotator` is "rlhf" (Boltzmann + slips over `CARE_SCORE`) or "rlaif" (the `CONSTITUTION`).
    Everything random draws from its own generator, and `state()` / `load()` round-trip every tensor,
    so a resumed run buys the same labels and fits the same models."""

    def __init__(
        self,
        annotator: str,
        obs_dim: int,
        n_actions: int,
        budget: int,
        length: int,
        members: int,
        query: str,
        temperature: float,
        error: float,
        seed: int,
        device: torch.device,
    ):
        self.annotator, self.budget, self.length, self.query = annotator, budget, length, query
        self.temperature, self.error, self.device = temperature, error, device
        with torch.random.fork_rng(devices=[]):  # the members' initialisation leaves torch's RNG as it was
            torch.manual_seed(seed)
            self.model = RewardEnsemble(obs_dim, n_actions, members).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.count = 0
        shape = (budget, 2, length)
        self.store = Segments(
            torch.zeros(*shape, obs_dim, dtype=torch.uint8, device=device),
            torch.zeros(*shape, dtype=torch.int64, device=device),
            torch.zeros(*shape, device=device),
            torch.zeros(*shape, device=device),
            torch.zeros(*shape, len(FACTS), device=device),
        )
        self.labels = torch.zeros(budget, device=device)

    def due(self, update: int, updates: int) -> int:
        """Labels to buy in `update` (0-based) of `updates`: the budget spread evenly, with what earlier
        updates could not buy (no baby alive yet) carried over, so the whole budget is spent."""
        return max(0, self.budget * min(update + 1, updates) // updates - self.count)

    def buy(self, buf: dict[str, torch.Tensor], n: int, pool: int) -> dict[str, float]:
        """Label up to n pairs of this rollout's segments (chosen from n*pool random pairs by the
        ensemble's disagreement, or the first n), store them and report on them: how often the reward
        model already agreed with the new labels (before fitting on them) and how often the labels
        agree with the noiseless hidden care score."""
        n = min(n, self.budget - self.count)
        if n <= 0:
            return {}
        pairs = pair_up(
            candidate_segments(buf, self.length), n * (pool if self.query == "disagreement" else 1), self.gen
        )
        if len(pairs) == 0:
            return {}
        with torch.no_grad():
            returns = self.model.segment_returns(
                pairs.obs.flatten(0, 1), pairs.action.flatten(0, 1), pairs.paid.flatten(0, 1)
            ).view(-1, len(pairs), 2)  # (K, P, 2)
            p_a = torch.sigmoid(returns[..., 0] - returns[..., 1])  # (K, P)
        if self.query == "disagreement":
            chosen = torch.argsort(p_a.std(0), descending=True, stable=True)[:n]
            pairs, p_a = pairs.take(chosen), p_a[:, chosen]
        else:
            pairs, p_a = pairs.take(torch.arange(min(n, len(pairs)), device=self.device)), p_a[:, :n]
        labels = self.annotate(pairs)
        truth = segment_scores(pairs.facts, pairs.mask, weight_vector(CARE_SCORE, self.device))
        decided = truth[:, 0] != truth[:, 1]
        k = len(pairs)
        for mine, new in zip(self.store.fields(), pairs.fields(), strict=True):
            mine[self.count : self.count + k] = new
        self.labels[self.count : self.count + k] = labels
        self.count += k
        agree = ((p_a.mean(0) > 0.5).float() == labels).float().mean()
        truthful = ((truth[:, 0] > truth[:, 1]).float() == labels)[decided].float()
        return {
            "reward_model_accuracy": float(agree),
            "label_truth": float(truthful.mean()) if len(truthful) else float("nan"),
        }

    def annotate(self, pairs: Segments) -> torch.Tensor:
        if self.annotator == "rlaif":
            return constitution_labels(pairs.facts, pairs.mask, self.gen)[0]
        scores = segment_scores(pairs.facts, pairs.mask, weight_vector(CARE_SCORE, self.device))
        return boltzmann_labels(scores[:, 0], scores[:, 1], self.temperature, self.error, self.gen)

    def fit(self, steps: int, batch: int = 32) -> float:
        """`steps` Adam steps on the Bradley-Terry loss, each member on its own random minibatch of the
        stored labels; returns the mean loss."""
        if self.count == 0 or steps == 0:
            return float("nan")
        members = self.model.members
        total = torch.zeros((), device=self.device)
        for _ in range(steps):
            idx = torch.randint(self.count, (members, batch), generator=self.gen, device=self.device)
            L = self.length
            obs = self.store.obs[idx].view(members, -1, self.store.obs.shape[-1])  # (K, batch*2*L, D)
            r = self.model(obs, self.store.action[idx].view(members, -1)).view(members, batch, 2, L)
            returns = (r * self.store.paid[idx]).sum(-1)  # (K, batch, 2)
            loss = preference_loss(returns[..., 0], returns[..., 1], self.labels[idx])
            self.opt.zero_grad()
            (loss * members).backward()  # each member's own mean loss
            self.opt.step()
            total += loss.detach()
        return float(total) / steps

    def reward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """obs (T, N, D), action (T, N) -> (T, N) the ensemble's mean reward."""
        T, N = action.shape
        with torch.no_grad():
            return self.model(obs.reshape(1, T * N, -1), action.reshape(1, T * N)).mean(0).view(T, N)

    def state(self) -> dict[str, torch.Tensor]:
        """Every tensor a resumed run needs (labels stored so far only)."""
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors |= optimizer_tensors(self.opt, "opt")
        tensors |= {f"store.{n}": x[: self.count] for n, x in zip(STORED, self.store.fields(), strict=True)}
        return tensors | {"labels": self.labels[: self.count], "gen": self.gen.get_state()}

    def load(self, tensors: dict[str, torch.Tensor], param_groups: list) -> None:
        """Tensors as `state()` gave them, on any device (the generator's state stays on the CPU)."""
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        load_optimizer(self.opt, tensors, "opt", param_groups, self.device)
        self.count = tensors["labels"].shape[0]
        for n, mine in zip(STORED, self.store.fields(), strict=True):
            mine[: self.count] = tensors[f"store.{n}"].to(self.device)
        self.labels[: self.count] = tensors["labels"].to(self.device)
        self.gen.set_state(tensors["gen"].cpu())
