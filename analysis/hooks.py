"""Hooks on a mother's network: cache, patch, ablate and steer activations at its named hook points.

Every intervention is a context manager over PyTorch forward hooks on the `hook_*` modules of
`caring.networks.MotherNet` (TransformerLens style): it changes nothing about the model itself, and on
leaving the block (normally or through an exception) every hook it added is removed, so the model is
restored exactly. Activations are (N, units) at every hook point but the logits and values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import nn

from caring.networks import MotherNet
from caring.protocols import Policy
from worlds.config import ConfigError

Edit = Callable[[torch.Tensor], torch.Tensor]
"""An activation (N, units) -> the activation to use instead (same shape)."""

ABLATIONS = ("zero", "mean", "resample")


def _sites(net: MotherNet, names: list[str] | tuple[str, ...]) -> dict[str, nn.Module]:
    sites = net.hook_points()
    for name in names:
        if name not in sites:
            raise ConfigError(f"unknown hook point {name!r}; valid hook points: {', '.join(sites)}")
    return {name: sites[name] for name in names}


@contextmanager
def intervene(net: MotherNet, edits: dict[str, Edit]) -> Iterator[None]:
    """Within the block, the output of each named hook point passes through its edit."""
    handles = []
    try:
        for name, module in _sites(net, list(edits)).items():
            edit = edits[name]
            handles.append(module.register_forward_hook(lambda _m, _i, out, edit=edit: _checked(edit, out)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _checked(edit: Edit, out: torch.Tensor) -> torch.Tensor:
    new = edit(out)
    if new.shape != out.shape:
        raise ValueError(
            f"an edit changed an activation's shape from {tuple(out.shape)} to {tuple(new.shape)}"
        )
    return new


@contextmanager
def cache(net: MotherNet, names: list[str] | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, the dict it yields fills with each named hook point's latest output (detached;
    all hook points if `names` is None)."""
    store: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Edit:
        def record(out: torch.Tensor) -> torch.Tensor:
            store[name] = out.detach()
            return out

        return record

    names = list(net.hook_points()) if names is None else names
    with intervene(net, {name: keep(name) for name in names}):
        yield store


def units_mask(width: int, units: torch.Tensor | list[int] | None, device: torch.device) -> torch.Tensor:
    """(width,) bool: the units an intervention touches (all if None)."""
    mask = torch.zeros(width, dtype=torch.bool, device=device)
    if units is None:
        return mask | True
    index = torch.as_tensor(units, dtype=torch.int64, device=device)
    if index.numel() and (index.min() < 0 or index.max() >= width):
        raise ConfigError(f"unit index out of range for a hook point of {width} units")
    return mask.index_fill(0, index, True)


def ablate(
    net: MotherNet,
    name: str,
    units: torch.Tensor | list[int] | None = None,
    mode: str = "zero",
    reference: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
):
    """Ablate `units` of hook point `name`: "zero" sets them to 0, "mean" to their mean over
    `reference` (R, units), "resample" to the activations of random rows of `reference`."""
    if mode not in ABLATIONS:
        raise ConfigError(f"unknown ablation {mode!r}; valid ablations: {', '.join(ABLATIONS)}")
    if mode != "zero" and reference is None:
        raise ConfigError(f"{mode} ablation needs reference activations")

    def edit(out: torch.Tensor) -> torch.Tensor:
        mask = units_mask(out.shape[-1], units, out.device)
        if mode == "zero":
            replacement = torch.zeros_like(out)
        elif mode == "mean":
            replacement = reference.mean(0).to(out).expand_as(out)
        else:
            rows = torch.randint(0, reference.shape[0], (out.shape[0],), generator=generator)
            replacement = reference[rows.to(reference.device)].to(out)
        return torch.where(mask, replacement, out)

    return intervene(net, {name: edit})


def patch(net: MotherNet, name: str, source: torch.Tensor, units: torch.Tensor | list[int] | None = None):
    """Replace `units` of hook point `name` with the same units of `source` (same shape as the
    activation: e.g. cached from another input)."""

    def edit(out: torch.Tensor) -> torch.Tensor:
        return torch.where(units_mask(out.shape[-1], units, out.device), source.to(out), out)

    return intervene(net, {name: edit})


def steer(net: MotherNet, name: str, vector: torch.Tensor, coefficient: float = 1.0):
    """Add `coefficient` x `vector` (units,) to hook point `name`'s output."""
    return intervene(net, {name: lambda out: out + coefficient * vector.to(out)})


class Intervened:
    """A policy that acts under an intervention: `context()` (e.g. `lambda: ablate(net, ...)`) is
    entered for each of its steps only, so mothers under different interventions can be evaluated
    side by side on one batch of worlds (`Task.evaluate_each`) without one's hooks touching another's."""

    def __init__(self, policy: Policy, context: Callable[[], AbstractContextManager]):
        self.policy, self.context = policy, context

    def __call__(self, state: Any, obs: torch.Tensor) -> torch.Tensor:
        with self.context():
            return self.policy(state, obs)
