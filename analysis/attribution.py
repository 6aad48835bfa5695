"""Attribution with captum: which observation features, and which hidden units, carry a mother's care?

Every forward function returns exactly the quantity attributed, one value per row: the log-probability
the policy gives to the situation's protective actions (the caring assays' sets, so "shoo" where a
predator closes in and "any move towards the baby" where it cries out of view), or V_task. The baseline
is the empty observation (all zeros): a feature that is off in the observation gets no attribution.
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients, LayerConductance

from analysis.assays import Battery
from caring.networks import MotherNet
from worlds.nursery.core import HEARD_MARKER, VIEW_CHANNELS, NurseryCore

BABY_CHANNELS = ("baby", "baby_marker_r", "baby_marker_g", "baby_marker_b", "baby_crying")
BABY_SCALARS = ("birth_flag", "carrying", "cry_heard", "cry_dy", "cry_dx", *HEARD_MARKER)


def baby_features(core: NurseryCore) -> torch.Tensor:
    """(obs_dim,) bool: the observation entries that are about a baby (its cells, marker and crying in
    the view; the birth flag, carrying and the cry heard)."""
    C, VV = len(VIEW_CHANNELS), core.V * core.V
    mask = torch.zeros(core.obs_dim, dtype=torch.bool, device=core.device)
    for channel in BABY_CHANNELS:
        mask[VIEW_CHANNELS.index(channel) : VV * C : C] = True
    for i, scalar in enumerate(core.scalar_names):  # every heard cry's marker where hearing has them
        if scalar in BABY_SCALARS or scalar.startswith("cry"):
            mask[VV * C + i] = True
    return mask


def protective_log_prob(net: MotherNet):
    """x (N, obs_dim) float, protective (N, n_actions) bool -> (N,) log P(a protective action)."""

    def forward(x: torch.Tensor, protective: torch.Tensor) -> torch.Tensor:
        logits = net(x)[0]
        chosen = logits.masked_fill(~protective, float("-inf")).logsumexp(-1)
        return chosen - logits.logsumexp(-1)

    return forward


def task_value(net: MotherNet):
    """x (N, obs_dim) float -> (N,) V_task."""
    return lambda x: net(x)[1]


def integrated_gradients(
    core: NurseryCore, net: MotherNet, battery: Battery, n_steps: int = 32
) -> dict[str, dict[str, float]]:
    """Per situation: the share of |attribution| on baby features for the protective log-probability
    and for V_task, the share of the input itself on baby features (the reference a share should be
    read against), and the largest |convergence delta| (sum of attributions minus the change of the
    attributed quantity: small means the integral is converged)."""
    x = battery.obs.float()
    baby = baby_features(core)
    outputs = {}
    for name, forward, extra in (
        ("care", protective_log_prob(net), (battery.protective,)),
        ("value", task_value(net), None),
    ):
        ig = IntegratedGradients(forward)
        attr, delta = ig.attribute(
            x,
            baselines=torch.zeros_like(x),
            additional_forward_args=extra,
            n_steps=n_steps,
            return_convergence_delta=True,
        )
        outputs[name] = (attr.abs(), delta.abs())
    out = {}
    for situation in dict.fromkeys(battery.situation):
        rows = battery.rows(situation)
        entry = {"input_share": _share(x[rows], baby)}
        for name, (attr, delta) in outputs.items():
            entry[f"{name}_baby_share"] = _share(attr[rows], baby)
            entry[f"{name}_max_delta"] = float(delta[rows].max())
        out[situation] = entry
    return out


def _share(values: torch.Tensor, features: torch.Tensor) -> float:
    """Mean over rows of the fraction of a row's total on `features`."""
    total = values.sum(-1).clamp(min=1e-12)
    return float((values[:, features].sum(-1) / total).mean())


def unit_conductance(
    net: MotherNet, battery: Battery, site: str, rows: torch.Tensor | None = None, n_steps: int = 32
) -> torch.Tensor:
    """(units,) mean conductance of each unit of hook point `site` for the protective log-probability,
    over the battery's `rows` (all if None): how much of the care signal flows through each unit."""
    layer = net.hook_points()[site]
    rows = torch.ones(len(battery.situation), dtype=torch.bool) if rows is None else rows
    x = battery.obs[rows].float()
    conductance = LayerConductance(protective_log_prob(net), layer).attribute(
        x, baselines=torch.zeros_like(x), additional_forward_args=(battery.protective[rows],), n_steps=n_steps
    )
    return conductance.mean(0)
