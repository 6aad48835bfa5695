"""Generalised advantage estimation for each reward stream, and RLMF's combined advantage.

Seed 000 §2.2 / Algorithm 1: the task and maternal streams each have their own critic and their own
GAE; the policy sees A_total = α·A_task + β₁·A_mat with α = 1 − β₁.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_value: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards, values, dones: (T, N); next_value: (N,) the value after the last step. dones[t] = 1
    when the episode ended at step t (no bootstrapping across it). -> (advantages, returns), (T, N)."""
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        following = next_value if t == T - 1 else values[t + 1]
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * following * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
    return advantages, advantages + values


def combined_advantage(
    a_task: torch.Tensor, a_mat: torch.Tensor, beta: float, normalize: bool = True
) -> torch.Tensor:
    """A_total = (1 − β₁)·A_task + β₁·A_mat. With `normalize`, each stream is first scaled to unit
    standard deviation (zero mean) over the batch, so that β₁ weighs the two signals, not their units."""
    if normalize:
        a_task = (a_task - a_task.mean()) / (a_task.std() + 1e-8)
        a_mat = (a_mat - a_mat.mean()) / (a_mat.std() + 1e-8)
    return (1.0 - beta) * a_task + beta * a_mat
