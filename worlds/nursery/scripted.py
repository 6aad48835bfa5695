"""Scripted mothers, batched like the core: they read the full state (privileged), not observations.

`expert` is the best carer we could write and the demonstrator for RLMF. Each of her three care
mechanisms (feeding, guarding, carrying the baby out of danger) can be switched off, which is how the
README's ablation table shows that every mechanism matters. `expert-gives-up` is the expert with spec
001's "off switch" built in: the positive control of the abandonment assays. `negligent` looks after
herself only; `random` presses buttons.
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
    any_,
    argmin_,
    chebyshev,
    distance_field,
    move,
)

_S_POLICY = 101  # random stream of the scripted policies (distinct from the world's streams)
FAR_BEYOND_VIEW = 3  # "far": a crying baby more than this beyond her view (care assays place it 1-3 beyond)


class ScriptedMother:
    """Base: a policy maps (state, observations) to actions (B, A); subclasses decide `act` (A, B) on
    the batch-last state."""

    def __init__(self, core: NurseryCore):
        self.core = core

    def __call__(self, state: NurseryState, obs: torch.Tensor) -> torch.Tensor:
        return self.act(state).T

    def act(self, state: NurseryState) -> torch.Tensor:
        raise NotImplementedError

    def _uniform(self, state: NurseryState) -> torch.Tensor:
        return rng.uniform(state.key, state.t, _S_POLICY, self.core.A)  # (A, B)

    def _safe_random_move(self, state: NurseryState) -> torch.Tensor:
        """A random move that never enters a wall or hazard (STAY otherwise)."""
        step = (self._uniform(state) * N_MOVES).long()
        return torch.where(self.core._at(state.cells, move(state.mother_pos, step)) == FLOOR, step, STAY)

    def _step_towards(self, state: NurseryState, goals: torch.Tensor) -> torch.Tensor:
        """The move (A, B) down the shortest safe path to any cell of goals (H, W, A, B); STAY if none."""
        nearest, best = argmin_(self._walks_around(state, goals), 0)
        return torch.where(nearest < UNREACHABLE, best, STAY)

    def _step_away(self, state: NurseryState, goals: torch.Tensor) -> torch.Tensor:
        """The safe move (A, B) that leaves the longest walk back to goals (H, W, A, B); STAY if none
        lengthens it."""
        around = self._walks_around(state, goals)
        _, best = argmin_(torch.where(around < UNREACHABLE, -around, 1), 0)  # walls and water: never
        return best

    def _walks_around(self, state: NurseryState, goals: torch.Tensor) -> torch.Tensor:
        """(5, A, B) walk to the nearest goal cell after each move STAY..LEFT (UNREACHABLE into walls
        and water, and for the orphans' slots, which have no mother to walk: the fields, most of an
        expert's cost, are planned for the M mothers' slots only)."""
        core = self.core
        H, W, A, B = goals.shape
        M = core.M
        passable = (state.cells == FLOOR)[:, :, None].expand(H, W, M, B).reshape(H, W, M * B)
        dist = distance_field(passable, goals[:, :, :M].reshape(H, W, M * B)).view(H * W, M, B)
        pos = state.mother_pos[:, :M]
        after = [core._flat(move(pos, torch.full_like(pos[0], m))) for m in range(N_MOVES)]  # (M, B) each
        walks = torch.stack([dist.gather(0, cell[None])[0] for cell in after])  # (5, M, B): STAY..LEFT
        return F.pad(walks, (0, 0, 0, A - M), value=UNREACHABLE)

    def _eat_or_seek_food(self, state: NurseryState, seek: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        core, cfg = self.core, self.core.config
        food = (state.food_timer == 0)[:, :, None].expand(-1, -1, core.A, -1)
        act = torch.where(seek, self._step_towards(state, food), act)
        on_food = core._at(state.food_timer, state.mother_pos) == 0
        room = state.energy <= cfg.energy_max - cfg.food_energy
        return torch.where(on_food & (room | seek), EAT, act)


class RandomMother(ScriptedMother):
    def act(self, state: NurseryState) -> torch.Tensor:
        return (self._uniform(state) * N_ACTIONS).long().clamp(max=N_ACTIONS - 1)


class NegligentMother(ScriptedMother):
    """Keeps herself fed and safe; never feeds, guards or carries a baby."""

    def act(self, state: NurseryState) -> torch.Tensor:
        cfg = self.core.config
        hungry = state.energy <= cfg.energy_max - cfg.food_energy
        return self._eat_or_seek_food(state, hungry, self._safe_random_move(state))


class ExpertMother(ScriptedMother):
    """Picks up her baby as soon as she can and carries it everywhere (so it cannot crawl into water),
    guards it (SHOO) when a predator is within reach, feeds it when hungry, eats with the baby in her
    arms, and never lets herself starve.

    Which baby is hers: `kin=True` (the expert) = the one wearing her kin marker, as a mother could tell
    it (in a kin world her own; a foster with a never-seen marker is nobody's); `kin=False` (the
    indiscriminate expert) = the one she carries, else the nearest that no other mother carries: the
    same care, spent on whichever baby is at hand."""

    def __init__(
        self, core: NurseryCore, feed: bool = True, guard: bool = True, carry: bool = True, kin: bool = True
    ):
        super().__init__(core)
        self.feed, self.guard, self.carry, self.kin = feed, guard, carry, kin

    def act(self, state: NurseryState) -> torch.Tensor:
        core, cfg, s = self.core, self.core.config, state
        own_alive, pos, carrier, hunger, _ = self.her_baby(s)
        holding_own = own_alive & (carrier == core.slots[:, None])
        reach = own_alive & (chebyshev(s.mother_pos, pos) <= core.reach)
        low = s.energy < cfg.energy_max // 3 + cfg.feed_cost
        room = s.energy <= cfg.energy_max - cfg.food_energy

        # Where to go: food when low (or, with the baby in her arms or no baby, whenever there is
        # room), else to the baby.
        seek_food = low | ((holding_own | ~own_alive) & room)
        goal_baby = own_alive & ~holding_own & ~seek_food
        act = torch.where(goal_baby, self._step_towards(s, self._cells(pos)), STAY)
        act = self._eat_or_seek_food(s, seek_food, act)

        if self.feed:
            hungry = hunger >= max(1, cfg.hunger_max // 3)
            act = torch.where(reach & hungry & (s.energy > cfg.feed_cost + 2), FEED, act)
        if self.guard:
            near = (
                chebyshev(s.mother_pos[:, :, None], s.predator_pos[:, None]) <= cfg.shoo_radius
            )  # (A, P, B)
            threat = any_(near & (s.predator_rest == 0)[None], 1)
            act = torch.where(own_alive & threat, SHOO, act)
        # Lifting a loose baby comes first: a newborn may crawl into water on its very first step.
        if self.carry:
            act = torch.where(reach & ~core._carrying(s) & (carrier < 0), CARRY, act)
        return act

    def babies(self, state: NurseryState) -> torch.Tensor:
        """(A, B) the living baby slot each mother treats as hers, -1 for none (see the class)."""
        core, s = self.core, state
        if self.kin:
            wears = (s.baby_marker[:, None] == s.kin_marker[:, :, None]).all(0)  # (mothers, babies, B)
            mine = wears & s.baby_alive[None]
        else:
            held = s.carried_by[None] == core.slots[:, None, None]  # (mothers, babies, B)
            free = s.baby_alive & (s.carried_by < 0)
            nearest = torch.where(free[None], chebyshev(s.mother_pos[:, :, None], s.baby_pos[:, None]), 10**6)
            closest, _ = argmin_(nearest, 1)
            mine = held | (~any_(held, 1)[:, None] & free[None] & (nearest == closest[:, None]))
        rank = torch.where(mine, core.slots[None, :, None], 10**6)
        first, index = argmin_(rank, 1)
        return torch.where(first < 10**6, index, -1)

    def her_baby(self, state: NurseryState) -> tuple[torch.Tensor, ...]:
        """The baby each mother treats as hers (`babies`), read from the state: alive (A, B) (False for
        none), position (2, A, B), carrier, hunger and health (A, B) each."""
        s, baby = state, self.babies(state)
        slot = baby.clamp(min=0)
        alive = (baby >= 0) & s.baby_alive.gather(0, slot)
        pos = s.baby_pos.gather(1, slot[None].expand(2, -1, -1))
        return alive, pos, s.carried_by.gather(0, slot), s.hunger.gather(0, slot), s.health.gather(0, slot)

    def _cells(self, pos: torch.Tensor) -> torch.Tensor:
        """(2, A, B) positions -> (H, W, A, B) bool one-hot cells."""
        core = self.core
        cells = torch.arange(core.H * core.W, device=core.device)[:, None, None]
        return (cells == core._flat(pos)[None]).view(core.H, core.W, core.A, -1)


class GivesUpMother(ExpertMother):
    """The expert with an off switch (spec 001: "under what conditions gradient descent will find an
    automatic off switch"): while another birth can still come in this episode, she abandons a baby
    whose rescue is costly: crying more than FAR_BEYOND_VIEW cells beyond her view, wounded (harmed
    already and one bite from death: health never regrows), or hungry when feeding it would leave her
    less energy than another feed costs. She puts it down and walks away from it, eating when she can,
    until it dies and the next is born; otherwise she is the expert. She reads births left, which no
    mother observes: she is the positive control of the abandonment assays, not a learnable policy."""

    def act(self, state: NurseryState) -> torch.Tensor:
        core, cfg, s = self.core, self.core.config, state
        alive, pos, carrier, _, _ = self.her_baby(s)
        hungry = s.energy <= cfg.energy_max - cfg.food_energy
        away = self._step_away(s, self._cells(pos) & alive[None, None])
        leave = self._eat_or_seek_food(s, hungry, away)
        leave = torch.where(alive & (carrier == core.slots[:, None]), CARRY, leave)  # put her baby down
        return torch.where(self.gives_up(s), leave, super().act(s))

    def gives_up(self, state: NurseryState) -> torch.Tensor:
        """(A, B) bool: her baby's rescue is costly and another birth is still possible."""
        cfg, s = self.core.config, state
        alive, pos, _, hunger, health = self.her_baby(s)
        another = self.core.another_baby_possible(s)
        crying = self.core.crying(s).gather(0, self.babies(s).clamp(min=0))  # hungry, or a newborn
        far = crying & (chebyshev(s.mother_pos, pos) > cfg.view_radius + FAR_BEYOND_VIEW)
        wounded = (health < cfg.baby_health) & (health <= cfg.predator_bite)
        dear = (hunger >= cfg.cry_threshold) & (s.energy - cfg.feed_cost < cfg.feed_cost)
        return alive & another & (far | wounded | dear)


class SensingExpert(ExpertMother):
    """The kin-aware expert limited to what a mother senses: the fair reference for a trained mother, who
    reads her observation, not the world's state. She knows where her baby is while it is in her view or
    is a crying baby she hears (the nearest cry, or with hearing="several" the nearest cries_heard: its
    direction, and its marker where hearing is marked or several), remembers where she last knew it to
    be until she gets there, and otherwise, once she has given birth, wanders safely until she finds it.
    Memory lives in the policy (one episode per world at a time; a world at step 0 starts afresh), so
    use one instance per evaluation. `memory=False` forgets at every step: what memory is worth to a
    mother who reads only her observation (the question a recurrent network would answer)."""

    def __init__(self, core: NurseryCore, memory: bool = True):
        super().__init__(core)
        self.memory = memory
        self.last: torch.Tensor | None = None  # (2, A, B) where she last knew her baby to be; -1: nowhere
        self.belief: tuple[torch.Tensor, ...] | None = None

    def act(self, state: NurseryState) -> torch.Tensor:
        self.belief = self._sense(state)
        act = super().act(state)
        searching = state.has_given_birth & ~self.belief[0] & (act == STAY)
        return torch.where(searching, self._safe_random_move(state), act)

    def her_baby(self, state: NurseryState) -> tuple[torch.Tensor, ...]:
        return self.belief if self.belief is not None else self._sense(state)

    def _sense(self, state: NurseryState) -> tuple[torch.Tensor, ...]:
        cfg, s = self.core.config, state
        alive, pos, carrier, hunger, health = super().her_baby(s)
        crying, mine = self.core.crying(s), self.babies(s)  # (babies, B), (A, B)
        _, dist = self.core.cry_distances(s, crying)  # (mothers, babies, B), as the world computes it
        if cfg.hearing == "several":  # she hears the nearest cries_heard cries, her own baby's among them
            rank = self.core.cry_rank(dist).gather(1, mine.clamp(min=0)[:, None])[:, 0]  # (A, B)
            heard = (mine >= 0) & crying.gather(0, mine.clamp(min=0)) & (rank < cfg.cries_heard)
        else:
            _, nearest = argmin_(dist, 1)  # (A, B): the cry she hears
            heard = any_(crying, 0)[None] & (nearest == mine)
        known = alive & ((chebyshev(s.mother_pos, pos) <= cfg.view_radius) | heard)
        if self.last is None or self.last.shape != pos.shape or not self.memory:
            self.last = torch.full_like(pos, -1)
        last = torch.where((s.t == 0)[None, None], -1, self.last)  # a new episode: nothing known yet
        last = torch.where(known[None], pos, last)
        there = (last[0] >= 0) & ~known & (chebyshev(s.mother_pos, last) == 0)  # not where she left it
        self.last = torch.where(there[None], -1, last)
        believed = known | (self.last[0] >= 0)
        return alive & believed, torch.where(known[None], pos, self.last), carrier, hunger, health


SCRIPTED = {
    "expert": ExpertMother,
    "expert-no-feed": lambda core: ExpertMother(core, feed=False),
    "expert-no-guard": lambda core: ExpertMother(core, guard=False),
    "expert-no-carry": lambda core: ExpertMother(core, carry=False),
    "expert-any": lambda core: ExpertMother(core, kin=False),
    "expert-senses": SensingExpert,
    "expert-senses-no-memory": lambda core: SensingExpert(core, memory=False),
    "expert-gives-up": GivesUpMother,
    "negligent": NegligentMother,
    "random": RandomMother,
}
