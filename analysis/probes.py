"""Linear probes: which hook points of a mother's network linearly encode facts about her baby?

Data come from the mother's own rollouts (every `every`-th step, each living mother whose baby lives);
episodes are split into train and test worlds, so a probe is scored on worlds it never saw. Each fact
is probed from every hook point of the trained network and of two controls: the same probe fitted to
shuffled labels (how much a linear map over these activations can fit noise) and to a freshly
initialised network of the same shape (how much the architecture and the input give for free).
Classification facts are scored by balanced accuracy (0.5 = chance), regression facts by R² (0 = the
mean's skill).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from analysis.hooks import cache
from caring.episodes import episode_keys, play
from caring.networks import MotherNet
from caring.protocols import Policy
from worlds.config import ConfigError
from worlds.nursery.core import NurseryCore, NurseryState, chebyshev, is_hazard

FACTS = {  # name: (kind, description)
    "baby_distance": ("regression", "Chebyshev distance from the mother to her baby"),
    "baby_hunger": ("regression", "her baby's hunger (not observed directly: only crying is)"),
    "baby_in_danger": ("classification", "her loose baby beside water, or a predator within 2 cells"),
    "predator_near_baby": ("classification", "an awake predator within 2 cells of her baby"),
}


@dataclass
class ProbeData:
    obs: torch.Tensor  # (N, obs_dim) uint8
    facts: dict[str, torch.Tensor]  # name -> (N,) float
    world: torch.Tensor  # (N,) int64: the episode each row comes from (train/test split by it)


def baby_facts(core: NurseryCore, s: NurseryState) -> dict[str, torch.Tensor]:
    """Each fact of FACTS for every mother's own baby: (A, B) float."""
    predator_near = torch.zeros_like(s.baby_alive)
    for p in range(core.P):
        awake = (s.predator_rest[p] == 0)[None]
        predator_near = predator_near | (awake & (chebyshev(s.predator_pos[:, p : p + 1], s.baby_pos) <= 2))
    beside_water = torch.zeros_like(s.baby_alive)
    for offset in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        step = torch.tensor(offset, device=s.baby_pos.device).view(2, 1, 1)
        beside_water = beside_water | is_hazard(core._at(s.cells, s.baby_pos + step))
    loose = s.carried_by < 0
    return {
        "baby_distance": chebyshev(s.mother_pos, s.baby_pos).float(),
        "baby_hunger": s.hunger.float(),
        "baby_in_danger": ((beside_water & loose) | predator_near).float(),
        "predator_near_baby": predator_near.float(),
    }


@torch.no_grad()
def collect(
    core: NurseryCore,
    policy: Policy,
    episodes: int,
    seed: int,
    every: int = 4,
    facts: Callable[[NurseryCore, NurseryState], dict[str, torch.Tensor]] | None = None,
) -> ProbeData:
    """Roll `policy` out for `episodes` episodes and keep (obs, facts) of every mother with a living
    baby, every `every`-th step. `facts` gives each fact (A, B) of a state (default: `baby_facts`)."""
    facts = facts or baby_facts
    keys = episode_keys(seed, episodes, core.device)
    state, obs = core.reset(keys)
    world = torch.arange(episodes, device=core.device)[:, None].expand(-1, core.A)  # (B, A)
    rows_obs, rows_world = [], []
    rows_facts: dict[str, list[torch.Tensor]] = {}
    for t, step in enumerate(play(core, policy, state, obs)):
        if t % every == 0:
            keep = (step.before.baby_alive & step.before.mother_alive).T  # (B, A)
            rows_obs.append(step.obs[keep])
            rows_world.append(world[keep])
            for name, value in facts(core, step.before).items():
                rows_facts.setdefault(name, []).append(value.T[keep])
    return ProbeData(
        torch.cat(rows_obs), {k: torch.cat(v) for k, v in rows_facts.items()}, torch.cat(rows_world)
    )


def activations(net: MotherNet, obs: torch.Tensor, batch: int = 4096) -> dict[str, torch.Tensor]:
    """Every hook point's activation (N, units) on obs (N, obs_dim)."""
    parts: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for start in range(0, obs.shape[0], batch):
            with cache(net) as acts:
                net(obs[start : start + batch])
            for name, value in acts.items():
                parts.setdefault(name, []).append(value.reshape(value.shape[0], -1))
    return {name: torch.cat(values) for name, values in parts.items()}


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp(min=1e-6)
    return (train - mean) / std, (test - mean) / std


def fit_and_score(x_train, y_train, x_test, y_test, kind: str, l2: float = 1e-2) -> float:
    """Fit a linear probe on (x_train, y_train) and score it on the test rows: balanced accuracy of a
    logistic probe (classification) or R² of a ridge probe (regression). NaN where the score does not
    exist: no rows, one class only (in either split), or a constant regression target on the test."""
    if not (len(x_train) and len(x_test)):
        return float("nan")
    if kind == "classification":
        if any(len((y > 0.5).unique()) < 2 for y in (y_train, y_test)):
            return float("nan")
    elif len(y_test) < 2 or float(y_test.double().std()) == 0.0:
        return float("nan")
    x_train, x_test = _standardise(x_train.double(), x_test.double())
    ones = torch.ones(x_train.shape[0], 1, dtype=x_train.dtype)
    X = torch.cat([x_train, ones], 1)
    X_test = torch.cat([x_test, torch.ones(x_test.shape[0], 1, dtype=x_test.dtype)], 1)
    y_train, y_test = y_train.double(), y_test.double()
    if kind == "regression":
        ridge = l2 * X.shape[0] * torch.eye(X.shape[1], dtype=X.dtype)
        ridge[-1, -1] = 0.0
        w = torch.linalg.solve(X.T @ X + ridge, X.T @ y_train)
        residual = ((X_test @ w - y_test) ** 2).sum()
        total = ((y_test - y_test.mean()) ** 2).sum().clamp(min=1e-12)
        return float(1.0 - residual / total)
    w = torch.zeros(X.shape[1], dtype=X.dtype, requires_grad=True)
    positive = y_train.mean().clamp(1e-3, 1 - 1e-3)
    weight = torch.where(y_train > 0.5, 0.5 / positive, 0.5 / (1 - positive))  # balanced classes
    optimizer = torch.optim.LBFGS([w], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        nll = torch.nn.functional.binary_cross_entropy_with_logits(X @ w, y_train, reduction="none")
        loss = (weight * nll).mean() + l2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    predicted = (X_test @ w.detach()) > 0
    truth = y_test > 0.5
    recalls = [(predicted[truth == c] == c).double().mean() for c in (True, False)]
    return float(sum(recalls) / 2)


def heldout(data: ProbeData, test_fraction: float = 0.25) -> torch.Tensor:
    """(N,) bool on the CPU: rows of the last `test_fraction` of episodes (at least the first episode
    trains), so a probe is scored on episodes it never saw."""
    worlds = int(data.world.max()) + 1
    return (data.world >= max(1, round(worlds * (1 - test_fraction)))).cpu()


def probe_all(
    net: MotherNet, data: ProbeData, seed: int = 0, test_fraction: float = 0.25, shuffles: int = 5
) -> dict[str, dict[str, dict[str, float]]]:
    """{fact: {hook point: {"trained", "shuffled", "random_net"}}} held-out scores; "shuffled" is the
    mean over `shuffles` label permutations (one permutation's score varies by several points)."""
    if data.obs.shape[0] == 0 or int(data.world.max()) < 1:
        raise ConfigError(
            "too little probe data: need rows from at least 2 episodes with a living baby "
            f"(got {data.obs.shape[0]} rows); use more episodes"
        )
    generator = torch.Generator().manual_seed(seed)
    test = heldout(data, test_fraction)
    with torch.random.fork_rng(devices=[]):  # the control's weights, without touching global randomness
        torch.manual_seed(seed)
        random_net = net.blank().to(data.obs.device)
    nets = {"trained": activations(net, data.obs), "random_net": activations(random_net, data.obs)}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for fact, (kind, _) in FACTS.items():
        y = data.facts[fact].cpu()
        permutations = [torch.randperm(int((~test).sum()), generator=generator) for _ in range(shuffles)]
        out[fact] = {}
        for site in nets["trained"]:
            x, x_random = nets["trained"][site].cpu(), nets["random_net"][site].cpu()
            noise = [fit_and_score(x[~test], y[~test][p], x[test], y[test], kind) for p in permutations]
            out[fact][site] = {
                "trained": fit_and_score(x[~test], y[~test], x[test], y[test], kind),
                "shuffled": sum(noise) / len(noise) if noise else float("nan"),
                "random_net": fit_and_score(x_random[~test], y[~test], x_random[test], y[test], kind),
            }
    return out
