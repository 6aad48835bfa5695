"""PPO with two critics, read top to bottom (seed 000's Algorithm 1 without naming any method):
rollout storage → GAE per stream → combined advantage → clipped update.

The task stream and the second stream each have their own critic (value heads on the policy's trunk, or
critics of their own: `MotherNet(critics=...)`) and their own GAE; the policy follows
A_total = (1 − β₁)·A_task + β₁·A_second. With `adv_norm="per-stream"` each advantage is normalised
first, so that β₁ weighs the two signals, not their units (and a rule penalty's size then cannot matter
to the policy); with "joint" the sum is normalised, so a larger penalty weighs more, as in spec 000's
Theorem 2. With PopArt (`value_norm`) each critic learns its returns in units of their running
statistics, so a large penalty cannot swamp a shared trunk's gradient. A stream may add a loss on the
policy's trunk features (theory of mind); nothing here knows which stream it is.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from caring.networks import POPART_RATE, MotherNet


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


ADV_NORMS = ("per-stream", "joint", "none")


def _standardize(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + 1e-8)


def combined_advantage(
    a_task: torch.Tensor, a_mat: torch.Tensor, beta: float, norm: str = "per-stream"
) -> torch.Tensor:
    """A_total = (1 − β₁)·A_task + β₁·A_mat over a minibatch. "per-stream": each stream is first scaled
    to zero mean and unit standard deviation, so that β₁ weighs the two signals, not their units;
    "joint": the sum is, so each stream weighs by its size too; "none": neither."""
    if norm == "per-stream":
        a_task, a_mat = _standardize(a_task), _standardize(a_mat)
    combined = (1.0 - beta) * a_task + beta * a_mat
    return _standardize(combined) if norm == "joint" else combined


@torch.no_grad()
def popart(net: MotherNet, returns: torch.Tensor) -> None:
    """PopArt's update for a `value_norm` net: fold this rollout's returns (2, M) (task, mat) into the
    running moments, then rescale each value head so that its denormalised output is unchanged
    ("preserving outputs precisely")."""
    old_mean, old_std = net.value_stats()
    rate = POPART_RATE
    net.value_moment_1.mul_(1 - rate).add_(rate * returns.mean(1))
    net.value_moment_2.mul_(1 - rate).add_(rate * returns.square().mean(1))
    net.value_updates.add_(1)
    mean, std = net.value_stats()
    for i, head in enumerate((net.value_task, net.value_mat)):
        head.weight.mul_(old_std[i] / std[i])
        head.bias.mul_(old_std[i]).add_(old_mean[i] - mean[i]).div_(std[i])


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
    settings (gamma, lam, clip, ent_coef, vf_coef, max_grad_norm, adv_norm); `stream` may add a loss
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
    if net.value_norm:
        popart(net, torch.stack([flat["ret_task"], flat["ret_mat"]]))
    mean, std = net.value_stats()  # value targets in the critics' units: (0, 1) without PopArt
    flat["ret_task"] = (flat["ret_task"] - mean[0]) / std[0]
    flat["ret_mat"] = (flat["ret_mat"] - mean[1]) / std[1]
    size = flat["action"].shape[0]
    mb = max(1, size // c.minibatches)
    names = ("policy_loss", "value_task_loss", "value_mat_loss", "entropy", "approx_kl", "clip_frac")
    sums = torch.zeros(len(names), dtype=torch.float64, device=next_obs.device)  # read once, at the end
    count = 0
    for _ in range(c.epochs):
        order = torch.randperm(size, generator=gen, device=next_obs.device)
        for start in range(0, size - mb + 1, mb):
            idx = order[start : start + mb]
            features, logits, v_task, v_mat = net.outputs(flat["obs"][idx])
            logp_all = F.log_softmax(logits, -1)
            logp = logp_all.gather(1, flat["action"][idx][:, None])[:, 0]
            ratio = torch.exp(logp - flat["logp"][idx])
            adv = combined_advantage(flat["a_task"][idx], flat["a_mat"][idx], beta, c.adv_norm)
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
