"""Audit a maternal reward model: which actions does M pay for, in whose states?

A reward model can score well on held-out transitions and still pay for the wrong thing: M may judge
the *state* a mother is in (is she holding her baby?) more than the *action* she takes there. The audit
replays a policy and, in every state M judges (in the nursery: a mother's baby is alive), steps the
world once with each of her actions from that same state, the other mothers acting as they really did
(the core is a pure function of state and action, so the worlds' randomness is shared), and asks M for
its reward on each.
Rows of the table: the action the policy really took; columns: M's mean reward had she taken each
action instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from caring.episodes import episode_keys, play
from caring.protocols import Policy, Task
from caring.runs import run_training
from caring.streams import STREAMS, get_stream
from worlds.config import ConfigError

Judge = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(obs (N, obs_dim), action (N,), next_obs (N, obs_dim)) -> (N,) a reward model's judgement."""


@torch.inference_mode()
def action_preferences(task: Task, core: Any, judge: Judge, policy: Policy, episodes: int, seed: int) -> dict:
    """A judgement of transitions (RLMF: M's sigmoid(M(s, a, s'_a)), its reward up to the task's
    `learned_offset`) for every action a, in the states `policy` visits that M judges. Returns counts
    per taken action, the (taken x counterfactual) mean table, the mean judgement of each action over
    all those states, how often M's favourite action is the one taken, and M's mean judgement of the
    real transitions grouped by their outcome (the task's `outcome_groups`: in lava, whether the step
    ended on lava, in quicksand, at the goal or elsewhere)."""
    state, obs = core.reset(episode_keys(seed, episodes, core.device))
    B, A = obs.shape[:2]
    n = task.n_actions
    table = torch.zeros(n, n, device=core.device)  # (taken, counterfactual) reward sums
    count = torch.zeros(n, device=core.device)
    agree = torch.zeros((), device=core.device)
    by_outcome: dict[str, list[float]] = {}  # name -> [reward sum, count]
    for step in play(core, policy, state, obs):
        before, taken = step.before, step.action  # (B, A)
        keep = task.judged(before) & task.acting(before)  # (B, A)
        if not keep.any():
            continue
        # Every (mother, action) deviation in one step of A*n copies of each world: she alone deviates,
        # the other mothers act as they really did. Copy k = mother * n + a of world b is row k*B + b.
        copies = torch.arange(A * n, device=core.device)
        deviant, action = copies // n, copies % n  # (A*n,)
        forced = taken.repeat(A * n, 1)  # (A*n*B, A)
        rows = torch.arange(A * n * B, device=core.device)
        column = deviant.repeat_interleave(B)  # (A*n*B,): whose action is forced in each row
        forced[rows, column] = action.repeat_interleave(B)
        _, out = core.step(before.index(torch.arange(B, device=core.device).repeat(A * n)), forced)
        judged = judge(
            step.obs.repeat(A * n, 1, 1)[rows, column], forced[rows, column], out.obs[rows, column]
        )  # (A*n*B,)
        rewards = judged.view(A, n, B).permute(2, 0, 1)  # (B, A, n)
        kept = rewards[keep]  # (states, n)
        took = taken[keep]  # (states,)
        table.index_add_(0, took, kept)
        count += torch.bincount(took, minlength=n)
        agree += (kept.argmax(-1) == took).sum()
        real = rewards.gather(2, taken[..., None])[..., 0]  # (B, A): M on what she really did
        for group, mask in task.outcome_groups(before, step.out).items():
            sums = by_outcome.setdefault(group, [0.0, 0.0])
            sums[0] += float(real[keep & mask].sum())
            sums[1] += float((keep & mask).sum())
    total = count.sum()
    if total == 0:
        raise ValueError("the policy never reached a state M judges in these episodes; nothing to audit")
    mean_table = table / count.clamp(min=1)[:, None]
    return {
        "actions": list(task.action_names),
        "states": int(total),
        "taken_count": count.long().tolist(),
        "reward_if": mean_table.tolist(),  # [taken][counterfactual]; rows with count 0 are zeros
        "mean_reward_per_action": (table.sum(0) / total).tolist(),
        "top_action_is_taken": float(agree / total),
        "reward_by_outcome": {
            group: {"mean": total_reward / n if n else None, "count": int(n)}
            for group, (total_reward, n) in by_outcome.items()
        },
    }


def format_audit(name: str, audit: dict) -> str:
    """The table as text: one row per action the policy took, one column per action M could have paid."""
    names = audit["actions"]
    lines = [
        f"{name}: {audit['states']} states M judges; M's favourite action is the one taken in "
        f"{audit['top_action_is_taken']:.1%} of them",
        "taken  (count) | mean sigmoid(M) had she taken: " + " ".join(f"{n[:5]:>5}" for n in names),
    ]
    for i, row in enumerate(audit["reward_if"]):
        if audit["taken_count"][i]:
            cells = " ".join(f"{v:5.2f}" for v in row)
            lines.append(f"{names[i]:>6} ({audit['taken_count'][i]:6d}) | {'':31s}{cells}")
    means = " ".join(f"{v:5.2f}" for v in audit["mean_reward_per_action"])
    lines.append(f"{'all':>6} {'':8s} | {'':31s}{means}")
    outcomes = ", ".join(
        f"{group} {v['mean']:.2f} (n={v['count']})"
        for group, v in audit["reward_by_outcome"].items()
        if v["count"]
    )
    lines.append(f"mean sigmoid(M) on the real transitions, by outcome: {outcomes}")
    return "\n".join(lines)


def load_judge(run: Path, core: Any, task: Task) -> Judge:
    """The judgement a run trained with (its stream's reward model of transitions), or one clear error."""
    config = run_training(run)
    method = config.method
    stream = get_stream(method)
    if not stream.judges:
        auditable = ", ".join(name for name, s in STREAMS.items() if s.judges)
        raise ConfigError(
            f"{run} was trained with --method {method}: it has no maternal model to audit "
            f"(auditable methods: {auditable})"
        )
    return stream.judge(run, config, core, task)
