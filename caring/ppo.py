"""PPO with two critics, read top to bottom (seed 000's Algorithm 1 without naming any method):
rollout storage → GAE per stream → combined advantage → clipped update.

The task stream and the second stream each have their own critic (value heads on the shared trunk) and
their own GAE; the policy follows A_total = (1 − β₁)·A_task + β₁·A_second, each advantage normalised
first so that β₁ weighs the two signals, not their units. A stream may add a loss on the same trunk
features (theory of mind); nothing here knows which stream it is.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from caring.networks import MotherNet


def storage(T: int, N: int, obs_dim: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A rollout of T steps of N agents. r_mat starts at 0: a stream that pays nothing leaves it so."""
    return {
        "obs": torch.empty(T, N, obs_dim, dtype=torch.uint8, device=device),
        "action": torch.empty(T, N, dtype=torch.int64, device=device),
        "logp": torch.empty(T, N, device=device),
        "v_task": torch.empty(T, N, device=device),
        "v_mat": torch.empty(T, N, device=device),
        "r_task": torch.empty(T, N, device=device),
        "r_mat": torch.zeros(T, N, device=device),
        "done": torch.empty(T, N, device=device),  # the agent's episode ended at this step
        "live": torch.empty(T, N, device=device),  # the step is a training sample (she acted)
    }


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


def update(
    net: MotherNet,
    opt: torch.optim.Optimizer,
    buf: dict[str, torch.Tensor],
    next_obs: torch.Tensor,
    beta: float,
    c: Any,
    gen: torch.Generator,
    stream: Any,
) -> dict[str, float]:
    """One PPO update on a rollout `buf` (T, N, ...) whose last step led to next_obs (N, obs_dim):
    `c.epochs` passes over `c.minibatches` shuffled minibatches of the live steps. `c` holds the PPO
    settings (gamma, lam, clip, ent_coef, vf_coef, max_grad_norm); `stream` may add a loss
    (`stream.loss(features, rows)` over its `loss_inputs` columns). Returns the mean losses."""
    T, N = buf["action"].shape
    with torch.no_grad():
        _, next_task, next_mat = net(next_obs)
    a_task, ret_task = gae(buf["r_task"], buf["v_task"], next_task, buf["done"], c.gamma, c.lam)
    a_mat, ret_mat = gae(buf["r_mat"], buf["v_mat"], next_mat, buf["done"], c.gamma, c.lam)
    live = buf["live"].reshape(-1) > 0
    flat = {k: v.reshape(T * N, *v.shape[2:])[live] for k, v in buf.items()}
    flat["a_task"], flat["a_mat"] = a_task.reshape(-1)[live], a_mat.reshape(-1)[live]
    flat["ret_task"], flat["ret_mat"] = ret_task.reshape(-1)[live], ret_mat.reshape(-1)[live]
    size = flat["action"].shape[0]
    mb = max(1, size // c.minibatches)
    names = ("policy_loss", "value_task_loss", "value_mat_loss", "entropy", "approx_kl", "clip_frac")
    sums = torch.zeros(len(names), dtype=torch.float64, device=next_obs.device)  # read once, at the end
    count = 0
    for _ in range(c.epochs):
        order = torch.randperm(size, generator=gen, device=next_obs.device)
        for start in range(0, size - mb + 1, mb):
            idx = order[start : start + mb]
            features = net.trunk(flat["obs"][idx])  # shared by every head's loss
            logits, v_task, v_mat = net.heads(features)
            logp_all = F.log_softmax(logits, -1)
            logp = logp_all.gather(1, flat["action"][idx][:, None])[:, 0]
            ratio = torch.exp(logp - flat["logp"][idx])
            adv = combined_advantage(flat["a_task"][idx], flat["a_mat"][idx], beta)
            policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - c.clip, 1 + c.clip)).mean()
            v_task_loss = 0.5 * (v_task - flat["ret_task"][idx]).pow(2).mean()
            v_mat_loss = 0.5 * (v_mat - flat["ret_mat"][idx]).pow(2).mean()
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
            loss = policy_loss + c.vf_coef * (v_task_loss + v_mat_loss) - c.ent_coef * entropy
            extra = stream.loss(features, {k: flat[k][idx] for k in stream.loss_inputs})
            if extra is not None:
                loss = loss + extra
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), c.max_grad_norm)
            opt.step()
            with torch.no_grad():
                log_ratio = logp - flat["logp"][idx]
                approx_kl = ((ratio - 1) - log_ratio).mean()
                clip_frac = ((ratio - 1).abs() > c.clip).float().mean()
                parts = (policy_loss, v_task_loss, v_mat_loss, entropy, approx_kl, clip_frac)
                sums += torch.stack(parts).double()
            count += 1
    return dict(zip(names, (sums / max(1, count)).tolist(), strict=True))
