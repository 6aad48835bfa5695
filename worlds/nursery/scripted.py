"""Scripted mothers, batched like the core: they read the full state (privileged), not observations.

`expert` is the best carer we could write and the demonstrator for RLMF. Each of her three care
mechanisms (feeding, guarding, carrying the baby out of danger) can be switched off, which is how the
README's ablation table shows that every mechanism matters. `negligent` looks after herself only;
`random` presses buttons.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from worlds import rng
from worlds.nursery.core import (
    CARRY,
    EAT,
    FEED,
    FLOOR,
    N_ACTIONS,
    N_MOVES,
    SHOO,
    STAY,
    UNREACHABLE,
    NurseryCore,
    NurseryState,
    chebyshev,
    distance_field,
)

_S_POLICY = 101  # random stream of the scripted policies (distinct from the world's streams)


class ScriptedMother:
    """Base: a policy maps (state, observations) to actions (B, A)."""

    def __init__(self, core: NurseryCore):
        self.core = core

    def __call__(self, state: NurseryState, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _uniform(self, state: NurseryState, n: int) -> torch.Tensor:
        return rng.uniform(state.key, state.t, _S_POLICY, n)

    def _safe_random_move(self, state: NurseryState) -> torch.Tensor:
        """A random move that never enters a wall or hazard (STAY otherwise)."""
        move = (self._uniform(state, self.core.A) * N_MOVES).long()
        target = state.mother_pos + self.core.deltas[move]
        return torch.where(self.core._at(state.cells, target) == FLOOR, move, STAY)

    def _step_towards(self, state: NurseryState, goals: torch.Tensor) -> torch.Tensor:
        """The move (B, A) down the shortest safe path to any cell of goals (B, A, H, W); STAY if none."""
        core = self.core
        B, A, H, W = goals.shape
        passable = (state.cells == FLOOR)[:, None].expand(-1, A, -1, -1).reshape(B * A, H, W)
        dist = distance_field(passable, goals.reshape(B * A, H, W)).view(B, A, H * W)
        here = state.mother_pos[:, :, None, :] + core.deltas[None, None]  # (B, A, 5, 2)
        flat = (here[..., 0] * W + here[..., 1]).clamp(0, H * W - 1)
        around = dist.gather(2, flat)  # (B, A, 5): STAY, UP, RIGHT, DOWN, LEFT
        best = around.argmin(-1)
        return torch.where(around.amin(-1) < UNREACHABLE, best, STAY)

    def _eat_or_seek_food(self, state: NurseryState, seek: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        cfg = self.core.config
        food = (state.food_timer == 0)[:, None].expand(-1, self.core.A, -1, -1)
        act = torch.where(seek, self._step_towards(state, food), act)
        on_food = self.core._at(state.food_timer, state.mother_pos) == 0
        room = state.energy <= cfg.energy_max - cfg.food_energy
        return torch.where(on_food & (room | seek), EAT, act)


class RandomMother(ScriptedMother):
    def __call__(self, state: NurseryState, obs: torch.Tensor) -> torch.Tensor:
        return (self._uniform(state, self.core.A) * N_ACTIONS).long().clamp(max=N_ACTIONS - 1)


class NegligentMother(ScriptedMother):
    """Keeps herself fed and safe; never feeds, guards or carries a baby."""

    def __call__(self, state: NurseryState, obs: torch.Tensor) -> torch.Tensor:
        cfg = self.core.config
        hungry = state.energy <= cfg.energy_max - cfg.food_energy
        return self._eat_or_seek_food(state, hungry, self._safe_random_move(state))


class ExpertMother(ScriptedMother):
    """Picks up her baby as soon as she can and carries it everywhere (so it cannot crawl into water),
    guards it (SHOO) when a predator is within reach, feeds it when hungry, eats with the baby in her
    arms, and never lets herself starve."""

    def __init__(self, core: NurseryCore, feed: bool = True, guard: bool = True, carry: bool = True):
        super().__init__(core)
        self.feed, self.guard, self.carry = feed, guard, carry

    def __call__(self, state: NurseryState, obs: torch.Tensor) -> torch.Tensor:
        core, cfg, s = self.core, self.core.config, state
        slots = torch.arange(core.A, device=core.device)
        own_alive = s.baby_alive
        holding_own = s.carried_by == slots  # baby slot i is carried by mother i
        reach = own_alive & (chebyshev(s.mother_pos, s.baby_pos) <= 1)
        low = s.energy < cfg.energy_max // 3 + cfg.feed_cost
        room = s.energy <= cfg.energy_max - cfg.food_energy

        # Where to go: food when low (or, with the baby in her arms or no baby, whenever there is
        # room), else to the baby.
        seek_food = low | ((holding_own | ~own_alive) & room)
        goal_baby = own_alive & ~holding_own & ~seek_food
        baby_cell = F.one_hot(s.baby_pos[..., 0] * core.W + s.baby_pos[..., 1], core.H * core.W).bool()
        act = torch.where(
            goal_baby, self._step_towards(s, baby_cell.view(*baby_cell.shape[:2], core.H, core.W)), STAY
        )
        act = self._eat_or_seek_food(s, seek_food, act)

        if self.feed:
            hungry = s.hunger >= max(1, cfg.hunger_max // 3)
            act = torch.where(reach & hungry & (s.energy > cfg.feed_cost + 2), FEED, act)
        if self.guard:
            near = chebyshev(s.mother_pos[:, :, None], s.predator_pos[:, None]) <= cfg.shoo_radius
            threat = (near & (s.predator_rest == 0)[:, None]).any(-1)
            act = torch.where(own_alive & threat, SHOO, act)
        # Lifting a loose baby comes first: a newborn may crawl into water on its very first step.
        if self.carry:
            act = torch.where(reach & ~core._carrying(s) & (s.carried_by < 0), CARRY, act)
        return act


SCRIPTED = {
    "expert": ExpertMother,
    "expert-no-feed": lambda core: ExpertMother(core, feed=False),
    "expert-no-guard": lambda core: ExpertMother(core, guard=False),
    "expert-no-carry": lambda core: ExpertMother(core, carry=False),
    "negligent": NegligentMother,
    "random": RandomMother,
}
