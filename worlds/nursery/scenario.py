"""Hand-built nursery situations: place every entity yourself and get a valid one-world state.

Tests use it to check single rules; the caring assays use it to construct the situations they score
(baby next to water, predator closing in, ...). Positions are (row, col) on the grid, border included.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from worlds import rng
from worlds.nursery.core import FLOOR, HAZARD, PIT, WALL, NurseryCore, NurseryState

Cell = tuple[int, int]


def scenario(
    core: NurseryCore,
    mothers: Sequence[Cell | None],
    babies: Sequence[Cell | None] = (),
    hazards: Sequence[Cell] = (),
    food: Sequence[Cell] = (),
    predators: Sequence[Cell] = (),
    walls: Sequence[Cell] = (),
    pits: Sequence[Cell] = (),
    t: int | None = None,
    seed: int = 0,
    **fields: Sequence | torch.Tensor,
) -> NurseryState:
    """A B=1 state. `mothers[i]` None is a slot whose mother has not joined yet (a later generation,
    see `generations`); `babies[i]` is mother i's baby (None or missing = not born yet); by default babies
    are newborn, fed and healthy, and a mother has given birth iff her baby exists. Hazards (water) and
    pits together must number exactly config.n_hazards (their positions drive the babies' curiosity)
    and predators n_predators.
    Any other NurseryState field can be given per slot, e.g. hunger=[12, 0], energy=[30, 60],
    baby_marker=[(250, 120, 200), (60, 110, 235)]. The state is batch-last like every NurseryState."""
    cfg, dev, A = core.config, core.device, core.A
    if len(mothers) != A:
        raise ValueError(f"need {A} mother positions, got {len(mothers)}")
    if len(hazards) + len(pits) != core.K:
        raise ValueError(
            f"need exactly n_hazards={core.K} hazard cells (water and pits), got {len(hazards) + len(pits)}"
        )
    if len(predators) != core.P:
        raise ValueError(f"need exactly n_predators={core.P} predator cells, got {len(predators)}")
    babies = list(babies) + [None] * (A - len(babies))

    def positions(cells: Sequence[Cell], n: int) -> torch.Tensor:  # -> (2, n, 1)
        return torch.tensor(list(cells), dtype=torch.int64, device=dev).view(n, 2).T.reshape(2, n, 1)

    grid = torch.full((cfg.height, cfg.width, 1), FLOOR, dtype=torch.uint8, device=dev)
    grid[0] = grid[-1] = grid[:, 0] = grid[:, -1] = WALL
    for y, x in walls:
        grid[y, x] = WALL
    for y, x in hazards:
        grid[y, x] = HAZARD
    for y, x in pits:
        grid[y, x] = PIT
    food_timer = torch.full((cfg.height, cfg.width, 1), -1, dtype=torch.int16, device=dev)
    for y, x in food:
        food_timer[y, x] = 0
    born = torch.tensor([[b is not None] for b in babies], device=dev)  # (A, 1)
    present = torch.tensor([[m is not None] for m in mothers], device=dev)  # (A, 1)
    mothers = [m if m is not None else (1, 1) for m in mothers]
    baby_cells = [b if b is not None else m for b, m in zip(babies, mothers, strict=True)]
    zeros = torch.zeros(A, 1, dtype=torch.int64, device=dev)
    kin = core.train_markers[:, :A, None]  # (3, A, 1)
    step = cfg.birth_step if t is None else t
    state = NurseryState(
        key=rng.seed_key(seed, dev),
        t=torch.tensor([step], device=dev),
        cells=grid,
        food_timer=food_timer,
        hazard_pos=positions([*hazards, *pits], core.K),
        mother_pos=positions(mothers, A),
        energy=zeros + cfg.energy_start,
        mother_alive=present.clone(),
        joined=present.clone(),
        births_left=zeros + cfg.births_per_life - born.long(),
        next_birth=torch.where(born, core.next_scheduled_birth(step), cfg.birth_step)
        if cfg.birth_interval
        else zeros + cfg.birth_step,
        has_given_birth=born.clone(),
        kin_marker=kin,
        baby_pos=positions(baby_cells, A),
        baby_alive=born,
        hunger=zeros,
        health=zeros + cfg.baby_health,
        age=zeros,
        baby_marker=kin.clone(),
        carried_by=zeros - 1,
        predator_pos=positions(predators, core.P),
        predator_den=positions(predators, core.P),
        predator_rest=torch.zeros(core.P, 1, dtype=torch.int64, device=dev),
    )
    for name, values in fields.items():
        current = getattr(state, name)
        value = torch.as_tensor(values, dtype=current.dtype, device=dev)
        if current.dim() == 3 and name not in ("cells", "food_timer"):  # per-slot pairs/triples
            value = value.reshape(current.shape[1], current.shape[0]).T
        setattr(state, name, value.reshape(current.shape))
    return state
