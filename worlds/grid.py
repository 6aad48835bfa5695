"""Pieces every batched grid world shares: a batch-last state container and grid shortest paths."""

from __future__ import annotations

import dataclasses
from typing import Self

import torch
import torch.nn.functional as F

UNREACHABLE = 10_000  # distance_field's value for cells no source can reach
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


class BatchLastState:
    """Base of a world's state dataclass: every field is a tensor whose last dimension is the world."""

    @property
    def batch(self) -> int:
        return self.t.shape[0]  # type: ignore[attr-defined]

    def tensors(self) -> list[torch.Tensor]:
        """Every field, in declaration order (names looked up once per class: a one-world step is
        short enough for dataclasses.fields to show)."""
        cls = type(self)
        if cls not in _FIELD_NAMES:
            _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(self))  # type: ignore[arg-type]
        return [getattr(self, name) for name in _FIELD_NAMES[cls]]

    def nbytes_per_world(self) -> int:
        return sum(v.element_size() * v.numel() for v in self.tensors()) // self.batch

    def put(self, worlds: torch.Tensor, other: Self) -> Self:
        """A copy with worlds (indices (n,)) replaced by `other`, a state of n worlds."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            mine = getattr(self, f.name).clone()
            mine[..., worlds] = getattr(other, f.name)
            out[f.name] = mine
        return type(self)(**out)

    def world(self, i: int) -> Self:
        """World i alone as a B=1 state in memory of its own (a step's cost at B=1 is per operation,
        and strided views of a batch would only add to it)."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return type(self)(**{f.name: getattr(self, f.name)[..., i : i + 1].contiguous() for f in fields})

    def where(self, mask: torch.Tensor, other: Self) -> Self:
        """`other`'s worlds where mask (B,) is set, this state's elsewhere: a reset without a host sync."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return type(self)(
            **{f.name: torch.where(mask, getattr(other, f.name), getattr(self, f.name)) for f in fields}
        )

    def index(self, worlds: slice | torch.Tensor) -> Self:
        """The sub-batch of the given worlds."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return type(self)(**{f.name: getattr(self, f.name)[..., worlds] for f in fields})


def distance_field(passable: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """Steps to the nearest source through passable cells: (H, W, N) bool x2 -> (H, W, N) int32.

    Relaxed on int16 with a step cost of UNREACHABLE + 1 into impassable cells instead of a masked
    select: on this project's CPU (torch 2.13) `torch.where` costs about ten times an int16 minimum,
    and the scripted experts plan two fields a step."""
    H, W, N = passable.shape
    step = (~passable).to(torch.int16) * UNREACHABLE + 1  # (H, W, N): the cost of stepping onto a cell
    dist = torch.full((H + 2, W + 2, N), UNREACHABLE, dtype=torch.int16, device=passable.device)
    inner = dist[1:-1, 1:-1]  # the grid, inside a border no walk can cross
    inner.masked_fill_(sources, 0)
    for _ in range(H * W):
        before = inner.clone()
        near = torch.minimum(
            torch.minimum(dist[:-2, 1:-1], dist[2:, 1:-1]), torch.minimum(dist[1:-1, :-2], dist[1:-1, 2:])
        )
        torch.minimum(inner, near + step, out=inner)
        if torch.equal(before, inner):
            break
    return inner.int()


def connected(passable: torch.Tensor) -> torch.Tensor:
    """(N,) bool: every passable cell of each grid (H, W, N) bool can reach every other by up/down/
    left/right moves through passable cells (true for grids without any).

    A flood fill from the first passable cell on the flattened grid padded with one impassable cell
    all round, so a cell's four neighbours are the flat indices +-1 and +-(W+2): a few in-place ORs a
    round on bytes, where a distance field (`distance_field`) costs several times more."""
    _, W, N = passable.shape
    row = W + 2
    open_ = F.pad(passable, (0, 0, 1, 1, 1, 1)).view(-1, N)  # ((H+2)*(W+2), N)
    reach = torch.zeros_like(open_)
    reach[open_.byte().argmax(0), torch.arange(N, device=passable.device)] = True
    while True:
        for _ in range(2):  # two rounds per convergence check (each check is a host sync)
            before, grown = reach, reach.clone()
            grown[1:] |= reach[:-1]
            grown[:-1] |= reach[1:]
            grown[row:] |= reach[:-row]
            grown[:-row] |= reach[row:]
            reach = (grown & open_) | before
        if torch.equal(before, reach):
            return (reach | ~open_).all(0)


def reachable_cells(passable: torch.Tensor, start: torch.Tensor, steps: int) -> torch.Tensor:
    """How many cells each agent can reach in at most `steps` up/down/left/right moves through passable
    cells (its own cell included; 0 if it stands on an impassable one): the "choice" of Franzmeyer et
    al. (2022). passable (H, W, B) bool, start (2, E, B) int -> (E, B) int64."""
    H, W, B = passable.shape
    E = start.shape[1]
    open_ = passable[:, :, None, :].expand(H, W, E, B)
    reach = torch.zeros(H * W, E, B, dtype=torch.bool, device=passable.device)
    reach.scatter_(0, (start[0] * W + start[1])[None], True)
    reach = reach.view(H, W, E, B) & open_
    for _ in range(steps):
        p = F.pad(reach, (0, 0, 0, 0, 1, 1, 1, 1))
        reach = (reach | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]) & open_
    return reach.sum((0, 1))
