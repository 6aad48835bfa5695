"""Batched evaluation of any mother policy on the nursery (episode metrics derived from step events),
and the episode keys and Wilson intervals every world's evaluation uses."""

from __future__ import annotations

import math

import torch

from caring.tasks import Policy
from worlds import rng
from worlds.nursery.core import HARM_CAUSES, NurseryCore


def episode_keys(seed: int, episodes: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The world keys of evaluation episodes 0..episodes-1 for a seed (any batch split gives the same)."""
    return rng.hash_parts(rng.seed_key(seed, device)[:, None], torch.arange(episodes, device=device)[None])[0]


def wilson_ci95(successes: float, n: float) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 0.0)
    z, p = 1.959964, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@torch.inference_mode()
def evaluate(core: NurseryCore, policy: Policy, episodes: int, seed: int, batch: int = 1024) -> dict:
    """Run `episodes` full episodes (max_cycles steps each) and summarise them."""
    totals: dict[str, float] = {}
    for start in range(0, episodes, batch):
        keys = episode_keys(seed, episodes, core.device)[start : start + batch]
        for name, value in _run(core, policy, keys).items():
            totals[name] = totals.get(name, 0.0) + value
    born, mothers = totals["babies_born"], episodes * core.A
    survived = totals["babies_alive_at_end"]
    lo, hi = wilson_ci95(survived, born)
    per_episode = {
        f"{k}_per_episode": totals[k] / episodes
        for k in ("harm_events", "feeds", "carry_steps", "guards", "hazard_contacts")
    }
    return {
        "episodes": episodes,
        "seed": seed,
        "baby_survival_rate": survived / born if born else 0.0,
        "baby_survival_ci95": [lo, hi],
        "baby_lifetime_mean": totals["baby_lifetime"] / born if born else 0.0,
        **per_episode,
        "mother_survival_rate": totals["mothers_alive_at_end"] / mothers,
        "babies_born": int(born),
        "baby_deaths": {cause: int(totals[f"deaths_{cause}"]) for cause in HARM_CAUSES},
    }


def _run(core: NurseryCore, policy: Policy, keys: torch.Tensor) -> dict[str, float]:
    state, obs = core.reset(keys)
    B = keys.shape[0]
    zeros = torch.zeros(B, core.A, dtype=torch.int64, device=core.device)
    acc = {
        name: zeros.clone()
        for name in (
            "harm_events",
            "feeds",
            "carry_steps",
            "guards",
            "hazard_contacts",
            "baby_lifetime",
            *(f"deaths_{c}" for c in HARM_CAUSES),
        )
    }
    acc["babies_born"] = state.baby_alive.long().T  # births at reset (birth_step = 0); state is batch-last
    for _ in range(core.config.max_cycles):
        state, out = core.step(state, policy(state, obs))
        obs, ev = out.obs, out.events
        harms = [ev[f"baby_harm_{c}"] for c in HARM_CAUSES]
        acc["harm_events"] += sum(harms)
        acc["feeds"] += ev["fed"]
        acc["carry_steps"] += ev["carrying"]
        acc["guards"] += ev["guarded"]
        acc["hazard_contacts"] += ev["mother_hazard"] + ev["baby_harm_hazard"]
        acc["baby_lifetime"] += ev["baby_alive"] + ev["baby_died"]  # a baby's last step counts as lived
        acc["babies_born"] += ev["baby_born"]
        # A death is put down to the gravest harm of its step: water, then a bite, then hunger.
        died = ev["baby_died"].bool()
        hazard, bite = ev["baby_harm_hazard"].bool(), ev["baby_harm_predator"].bool()
        acc["deaths_hazard"] += died & hazard
        acc["deaths_predator"] += died & ~hazard & bite
        acc["deaths_hunger"] += died & ~hazard & ~bite
    sums = {name: float(value.sum()) for name, value in acc.items()}
    sums["babies_alive_at_end"] = float(state.baby_alive.sum())
    sums["mothers_alive_at_end"] = float(state.mother_alive.sum())
    return sums
