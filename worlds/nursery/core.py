"""The nursery's one source of truth: B worlds stepped at once on torch tensors (any device).

`NurseryCore.step(state, actions)` is a pure function of a `NurseryState` and the mothers' actions
(gymnax style): it returns a new state, the mothers' observations, rewards, done flags and per-mother
event counts. There is no per-world Python loop; the only loops run over the few mother slots, to
resolve who gets a contested food patch or baby, in slot order.

Threats to a baby and the care that answers each:
  hunger    -> FEED (the baby cannot feed itself until it grows)
  predators -> SHOO (sends predators within `shoo_radius` back to their den)
  hazards   -> CARRY (a carried baby cannot crawl into water; young babies are drawn to it)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from worlds import rng
from worlds.nursery.config import NurseryConfig

# Mother actions.
STAY, UP, RIGHT, DOWN, LEFT, EAT, CARRY, FEED, SHOO = range(9)
ACTION_NAMES = ("stay", "up", "right", "down", "left", "eat", "carry", "feed", "shoo")
N_ACTIONS = len(ACTION_NAMES)
N_MOVES = 5  # STAY..LEFT: also the action set of baby brains

# Terrain codes.
FLOOR, WALL, HAZARD = 0, 1, 2

UNREACHABLE = 10_000  # distance_field's value for cells no source can reach

# Harm causes (also indices of the per-cause harm event counters).
HARM_CAUSES = ("predator", "hazard", "hunger")

# The egocentric view: (2r+1) x (2r+1) cells x these channels, uint8 0..255, then these scalars.
VIEW_CHANNELS = (
    "wall",
    "hazard",
    "food",
    "mother",
    "predator",
    "baby",
    "baby_marker_r",
    "baby_marker_g",
    "baby_marker_b",
    "baby_crying",
)
SCALARS = (
    "energy",
    "birth_flag",
    "carrying",
    "kin_marker_r",
    "kin_marker_g",
    "kin_marker_b",
    "cry_heard",
    "cry_dy",
    "cry_dx",
    "time",
)
ON = 255

# Kin markers (RGB). Mothers' markers come from the training palette; "novel" babies get a marker from
# the held-out palette, which no training config ever shows.
TRAIN_MARKERS = (
    (230, 60, 60),
    (60, 110, 235),
    (245, 205, 40),
    (165, 80, 225),
    (245, 140, 35),
    (50, 200, 195),
    (150, 90, 40),
    (235, 235, 235),
)
NOVEL_MARKERS = (
    (250, 120, 200),
    (140, 210, 60),
    (90, 60, 140),
    (20, 130, 80),
    (200, 160, 140),
    (120, 120, 20),
    (0, 170, 240),
    (170, 20, 90),
)

_DELTAS = ((0, 0), (-1, 0), (0, 1), (1, 0), (0, -1))  # STAY, UP, RIGHT, DOWN, LEFT

# Random streams (any distinct ints).
_S_LAYOUT, _S_MARKER, _S_STEP = range(1, 4)

# Per-mother events reported every step (all (B, A) int tensors); infos and metrics derive from these.
EVENTS = (
    "ate",
    "fed",
    "fed_own",
    "picked_up",
    "dropped",
    "carrying",
    "guarded",
    "mother_hazard",
    "mother_died",
    "baby_born",
    "baby_harm_predator",
    "baby_harm_hazard",
    "baby_harm_hunger",
    "baby_died",
    "baby_alive",
    "baby_distance",
    "baby_hunger",
)


@dataclass
class NurseryState:
    """Everything that changes during an episode. Baby slot i belongs to mother i."""

    key: torch.Tensor  # (B,) int64: this episode's random key
    t: torch.Tensor  # (B,) int64: steps taken this episode
    cells: torch.Tensor  # (B, H, W) uint8: FLOOR / WALL / HAZARD
    food_timer: torch.Tensor  # (B, H, W) int16: 0 ready, >0 regrowing, -1 no patch
    hazard_pos: torch.Tensor  # (B, K, 2) int64
    mother_pos: torch.Tensor  # (B, A, 2) int64
    energy: torch.Tensor  # (B, A) int64
    mother_alive: torch.Tensor  # (B, A) bool
    births_left: torch.Tensor  # (B, A) int64
    next_birth: torch.Tensor  # (B, A) int64: step at which the next birth may happen
    has_given_birth: torch.Tensor  # (B, A) bool: the reward switches to the baby from then on
    kin_marker: torch.Tensor  # (B, A, 3) uint8
    baby_pos: torch.Tensor  # (B, A, 2) int64
    baby_alive: torch.Tensor  # (B, A) bool: born and not yet dead
    hunger: torch.Tensor  # (B, A) int64
    health: torch.Tensor  # (B, A) int64
    age: torch.Tensor  # (B, A) int64
    baby_marker: torch.Tensor  # (B, A, 3) uint8
    carried_by: torch.Tensor  # (B, A) int64: carrying mother's slot, or -1
    predator_pos: torch.Tensor  # (B, P, 2) int64
    predator_den: torch.Tensor  # (B, P, 2) int64
    predator_rest: torch.Tensor  # (B, P) int64: steps left resting in the den

    @property
    def batch(self) -> int:
        return self.t.shape[0]

    def nbytes_per_world(self) -> int:
        return sum(v.element_size() * v[0].numel() for v in self.tensors())

    def tensors(self) -> list[torch.Tensor]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]

    def where(self, mask: torch.Tensor, other: NurseryState) -> NurseryState:
        """Per world: `other` where mask (B,) is true, else self."""
        out = {}
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            m = mask.view(-1, *([1] * (mine.dim() - 1)))
            out[f.name] = torch.where(m, theirs, mine)
        return NurseryState(**out)

    def index(self, worlds: slice | torch.Tensor) -> NurseryState:
        return NurseryState(**{f.name: getattr(self, f.name)[worlds] for f in dataclasses.fields(self)})


@dataclass
class StepOutput:
    obs: torch.Tensor  # (B, A, obs_dim) uint8
    reward: torch.Tensor  # (B, A) float32
    terminated: torch.Tensor  # (B, A) bool: the mother died this step
    truncated: torch.Tensor  # (B,) bool: the episode hit max_cycles
    events: dict[str, torch.Tensor]  # name -> (B, A) int64


def distance_field(passable: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """Steps to the nearest source through passable cells: (N, H, W) bool x2 -> (N, H, W) int32."""
    dist = torch.where(sources, 0, UNREACHABLE).int()
    for _ in range(passable.shape[1] * passable.shape[2]):
        p = F.pad(dist, (1, 1, 1, 1), value=UNREACHABLE)
        neighbours = (
            torch.minimum(
                torch.minimum(p[:, :-2, 1:-1], p[:, 2:, 1:-1]), torch.minimum(p[:, 1:-1, :-2], p[:, 1:-1, 2:])
            )
            + 1
        )
        new = torch.where(passable, torch.minimum(dist, neighbours), dist)
        if torch.equal(new, dist):
            break
        dist = new
    return dist


def chebyshev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().amax(-1)


class NurseryCore:
    """Rules of the nursery, batched. Holds only the config and constant tables; state is passed in."""

    def __init__(self, config: NurseryConfig | None = None, device: torch.device | str = "cpu"):
        self.config = cfg = config or NurseryConfig()
        self.device = torch.device(device)
        self.A, self.P, self.K = cfg.n_mothers, cfg.n_predators, cfg.n_hazards
        self.H, self.W = cfg.height, cfg.width
        r = cfg.view_radius
        self.V = 2 * r + 1
        C = len(VIEW_CHANNELS)
        self.scalar_cells = -(-len(SCALARS) // C)  # scalars ride in extra cells after the view
        self.view_dim = self.V * self.V * C
        self.obs_dim = self.view_dim + self.scalar_cells * C
        dev = self.device
        self.deltas = torch.tensor(_DELTAS, dtype=torch.int64, device=dev)  # (5, 2)
        self.train_markers = torch.tensor(TRAIN_MARKERS, dtype=torch.uint8, device=dev)
        self.novel_markers = torch.tensor(NOVEL_MARKERS, dtype=torch.uint8, device=dev)
        # Cell code = terrain + 3 * food_ready  ->  (wall, hazard, food) view channels.
        table = torch.zeros(6, len(VIEW_CHANNELS), dtype=torch.uint8, device=dev)
        table[WALL, 0] = table[WALL + 3, 0] = ON
        table[HAZARD, 1] = table[HAZARD + 3, 1] = ON
        table[3:, 2] = ON
        table[WALL + 3, 2] = table[HAZARD + 3, 2] = 0
        self.code_table = table
        ys, xs = torch.meshgrid(
            torch.arange(self.V, device=dev), torch.arange(self.V, device=dev), indexing="ij"
        )
        # Gather offsets of the view cells, then zeros for the scalar cells (overwritten afterwards).
        self.window_offsets = F.pad((ys * (self.W + 2 * r) + xs).reshape(-1), (0, self.scalar_cells))
        iy, ix = torch.meshgrid(
            torch.arange(1, self.H - 1, device=dev), torch.arange(1, self.W - 1, device=dev), indexing="ij"
        )
        self.interior = torch.stack([iy.reshape(-1), ix.reshape(-1)], -1)  # (L, 2)
        self.channel = {name: i for i, name in enumerate(VIEW_CHANNELS)}

    # ------------------------------------------------------------------ reset
    def reset(self, keys: torch.Tensor) -> tuple[NurseryState, torch.Tensor]:
        """New episodes for worlds with random keys (B,) -> (state, obs (B, A, obs_dim))."""
        cfg, dev, A, P, K = self.config, self.device, self.A, self.P, self.K
        keys = keys.to(dev)
        B = keys.shape[0]
        zeros_t = torch.zeros(B, dtype=torch.int64, device=dev)
        # Random layouts, redrawn for any world whose open floor is not all connected (so no mother,
        # baby or food patch is ever sealed off by walls and water). A world keeps its first connected
        # draw whatever else shares its batch.
        picks, cells = self._layout(keys, 0)
        for attempt in range(1, 64):
            bad = ~self._connected(cells)
            if not bad.any():
                break
            new_picks, new_cells = self._layout(keys, attempt)
            picks = torch.where(bad[:, None, None], new_picks, picks)
            cells = torch.where(bad[:, None, None], new_cells, cells)
        ends = torch.tensor([cfg.n_walls, K, cfg.n_food, A, P]).cumsum(0).tolist()
        hazards, food = picks[:, ends[0] : ends[1]], picks[:, ends[1] : ends[2]]
        mothers, predators = picks[:, ends[2] : ends[3]], picks[:, ends[3] : ends[4]]
        food_timer = self._paint(torch.full((B, self.H, self.W), -1, dtype=torch.int16, device=dev), food, 0)

        marker_order = torch.argsort(
            rng.uniform(keys, zeros_t, _S_MARKER, len(TRAIN_MARKERS)), dim=1, stable=True
        )
        kin = self.train_markers[marker_order[:, :A]]  # (B, A, 3): distinct per world
        if cfg.baby_markers == "kin":
            baby_marker = kin
        elif cfg.baby_markers == "swapped":
            baby_marker = kin.roll(1, dims=1)
        else:
            baby_marker = self.novel_markers[marker_order[:, :A]]
        zeros_a = torch.zeros(B, A, dtype=torch.int64, device=dev)
        state = NurseryState(
            key=keys,
            t=zeros_t,
            cells=cells,
            food_timer=food_timer,
            hazard_pos=hazards,
            mother_pos=mothers,
            energy=torch.full_like(zeros_a, cfg.energy_start),
            mother_alive=torch.ones(B, A, dtype=torch.bool, device=dev),
            births_left=torch.full_like(zeros_a, cfg.births_per_life),
            next_birth=torch.full_like(zeros_a, cfg.birth_step),
            has_given_birth=torch.zeros(B, A, dtype=torch.bool, device=dev),
            kin_marker=kin,
            baby_pos=mothers.clone(),
            baby_alive=torch.zeros(B, A, dtype=torch.bool, device=dev),
            hunger=zeros_a,
            health=zeros_a,
            age=zeros_a,
            baby_marker=baby_marker,
            carried_by=torch.full_like(zeros_a, -1),
            predator_pos=predators,
            predator_den=predators.clone(),
            predator_rest=torch.zeros(B, P, dtype=torch.int64, device=dev),
        )
        state = self._births(state, self._draws(state)["birth"])  # birth_step = 0 gives birth at reset
        return state, self.observe(state)

    def _layout(self, keys: torch.Tensor, attempt: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw a layout: a random permutation of interior cells per world, whose first cells become
        walls, then hazards, food, mothers and predators. -> (picks (B, L, 2), cells (B, H, W))."""
        cfg = self.config
        counter = torch.full_like(keys, attempt)
        order = torch.argsort(
            rng.uniform(keys, counter, _S_LAYOUT, self.interior.shape[0]), dim=1, stable=True
        )
        picks = self.interior[order]  # (B, L, 2)
        cells = torch.zeros(keys.shape[0], self.H, self.W, dtype=torch.uint8, device=self.device)
        cells[:, 0, :] = cells[:, -1, :] = cells[:, :, 0] = cells[:, :, -1] = WALL
        cells = self._paint(cells, picks[:, : cfg.n_walls], WALL)
        cells = self._paint(cells, picks[:, cfg.n_walls : cfg.n_walls + self.K], HAZARD)
        return picks, cells

    def _connected(self, cells: torch.Tensor) -> torch.Tensor:
        """(B,) bool: every floor cell can reach every other without crossing walls or water."""
        floor = cells == FLOOR
        first = F.one_hot(floor.flatten(1).int().argmax(1), self.H * self.W).view_as(floor).bool()
        dist = distance_field(floor, first)
        return ((dist < UNREACHABLE) | ~floor).flatten(1).all(1)

    def reset_done(self, state: NurseryState, done: torch.Tensor) -> tuple[NurseryState, torch.Tensor]:
        """Auto-reset the worlds flagged in done (B,) with their next keys; others unchanged."""
        fresh, _ = self.reset(rng.next_key(state.key))
        state = state.where(done, fresh)
        return state, self.observe(state)

    # ------------------------------------------------------------------ step
    def step(
        self, state: NurseryState, actions: torch.Tensor, baby_actions: torch.Tensor | None = None
    ) -> tuple[NurseryState, StepOutput]:
        """Advance every world one step. actions (B, A) int64 in [0, N_ACTIONS); baby_actions (B, A) in
        [0, N_MOVES) overrides the scripted baby brain (None = scripted)."""
        cfg = self.config
        s = dataclasses.replace(state)  # shallow copy; fields are replaced, never mutated
        s.t = state.t + 1
        alive0 = s.mother_alive
        act = torch.where(alive0, actions.to(self.device).long(), STAY)
        draws = self._draws(s)
        ev: dict[str, torch.Tensor] = {}

        # Mothers move; walls block, hazards kill.
        target = s.mother_pos + self.deltas[act.clamp(max=N_MOVES - 1) * (act < N_MOVES)]
        terrain = self._at(s.cells, target)
        s.mother_pos = torch.where((terrain == WALL)[..., None], s.mother_pos, target)
        mother_hazard = alive0 & (terrain == HAZARD)
        ev["mother_hazard"] = mother_hazard

        # Eat, carry/put down, feed: contested resources go to the lower slot first.
        s, ev["ate"] = self._eat(s, act == EAT)
        s, ev["picked_up"], ev["dropped"] = self._carry(s, act == CARRY)
        s, ev["fed"], ev["fed_own"] = self._feed(s, act == FEED)

        # SHOO: predators near a shooing mother go back to rest in their den.
        shoo = (act == SHOO) & alive0
        active = s.predator_rest == 0
        near = chebyshev(s.mother_pos[:, :, None], s.predator_pos[:, None]) <= cfg.shoo_radius  # (B, A, P)
        scared = near & shoo[:, :, None] & active[:, None, :]
        ev["guarded"] = scared.any(-1)
        hit = scared.any(1)  # (B, P)
        s.predator_pos = torch.where(hit[..., None], s.predator_den, s.predator_pos)
        s.predator_rest = torch.where(hit, cfg.predator_stun, s.predator_rest)

        # Carried babies ride along; the rest follow their brains.
        s = self._follow_carrier(s)
        s, baby_hazard = self._move_babies(s, draws, baby_actions)
        s = self._grown_babies_eat(s)
        s, bites = self._move_predators(s, draws)

        # Hunger, harm and death.
        alive = s.baby_alive
        hunger = torch.where(alive, (s.hunger + 1).clamp(max=cfg.hunger_max), s.hunger)
        starving = alive & (hunger >= cfg.hunger_max)
        health = s.health - bites * cfg.predator_bite - starving.long()
        died = alive & ((health <= 0) | baby_hazard)
        ev["baby_harm_predator"] = bites
        ev["baby_harm_hazard"] = baby_hazard.long()
        ev["baby_harm_hunger"] = starving.long()
        ev["baby_died"] = died
        s.hunger, s.health = hunger, health.clamp(min=0)
        s.baby_alive = alive & ~died
        s.age = torch.where(s.baby_alive, s.age + 1, s.age)
        s.next_birth = torch.where(died, s.t[:, None] + cfg.rebirth_delay, s.next_birth)

        # Mothers spend energy; starved or drowned mothers die and drop what they carry.
        carrying = self._carrying(s)
        energy = s.energy - alive0.long() * (1 + cfg.carry_cost * carrying.long())
        s.energy = energy.clamp(min=0)
        mother_died = alive0 & ((energy <= 0) | mother_hazard)
        s.mother_alive = alive0 & ~mother_died
        ev["mother_died"] = mother_died
        carrier_alive = torch.gather(s.mother_alive, 1, s.carried_by.clamp(min=0))
        s.carried_by = torch.where((s.carried_by >= 0) & carrier_alive & s.baby_alive, s.carried_by, -1)

        before = s.baby_alive
        s = self._births(s, draws["birth"])
        ev["baby_born"] = s.baby_alive & ~before
        s.food_timer = s.food_timer - (s.food_timer > 0).to(s.food_timer.dtype)

        ev["carrying"] = self._carrying(s)
        ev["baby_alive"] = s.baby_alive
        ev["baby_distance"] = torch.where(s.baby_alive, chebyshev(s.mother_pos, s.baby_pos), -1)
        ev["baby_hunger"] = torch.where(s.baby_alive, s.hunger, 0)

        w = cfg.baby_reward_weight
        reward = torch.where(s.has_given_birth, w * s.baby_alive.float() + (1.0 - w), 1.0)
        reward = reward * s.mother_alive.float()
        out = StepOutput(
            obs=self.observe(s),
            reward=reward,
            terminated=mother_died,
            truncated=s.t >= cfg.max_cycles,
            events={k: ev[k].long() for k in EVENTS},
        )
        return s, out

    # ------------------------------------------------------------------ rules
    def _eat(self, s: NurseryState, wants: torch.Tensor) -> tuple[NurseryState, torch.Tensor]:
        cfg = self.config
        wants = wants & s.mother_alive
        food = s.food_timer.reshape(
            s.batch, -1
        ).clone()  # written in place below; the input state is untouched
        ate = []
        for i in range(self.A):
            cell = s.mother_pos[:, i, 0] * self.W + s.mother_pos[:, i, 1]  # (B,)
            current = food.gather(1, cell[:, None])[:, 0]
            ok = wants[:, i] & (current == 0)
            food.scatter_(1, cell[:, None], torch.where(ok, cfg.food_regrow, current)[:, None].to(food.dtype))
            ate.append(ok)
        ate_t = torch.stack(ate, 1)
        s.food_timer = food.view_as(s.food_timer)
        s.energy = torch.where(ate_t, (s.energy + cfg.food_energy).clamp(max=cfg.energy_max), s.energy)
        return s, ate_t

    def _reachable_babies(self, s: NurseryState) -> torch.Tensor:
        """(B, A mothers, A babies) bool: living baby within one step (or carried by this mother)."""
        close = chebyshev(s.mother_pos[:, :, None], s.baby_pos[:, None]) <= 1
        return close & s.baby_alive[:, None, :] & s.mother_alive[:, :, None]

    def _choose_baby(self, eligible: torch.Tensor, mother: int) -> torch.Tensor:
        """eligible (B, A babies) for one mother -> (B,) slot: her own first, else the lowest; -1 if none."""
        slots = torch.arange(self.A, device=self.device)
        rank = torch.where(eligible, torch.where(slots == mother, 0, 1 + slots), 10**6)
        return torch.where(eligible.any(-1), rank.argmin(-1), -1)

    def _carry(self, s: NurseryState, wants: torch.Tensor) -> tuple[NurseryState, torch.Tensor, torch.Tensor]:
        wants = wants & s.mother_alive
        slots = torch.arange(self.A, device=self.device)
        carrying = s.carried_by[:, None, :] == slots[None, :, None]  # (B, mothers, babies)
        drop = wants & carrying.any(-1)
        carried_by = torch.where((carrying & drop[:, :, None]).any(1), -1, s.carried_by)
        reachable = self._reachable_babies(s)
        picked = []
        for i in range(self.A):
            eligible = reachable[:, i] & (carried_by < 0) & (wants[:, i] & ~drop[:, i])[:, None]
            choice = self._choose_baby(eligible, i)
            ok = choice >= 0
            carried_by = torch.where(ok[:, None] & (slots[None] == choice[:, None]), i, carried_by)
            picked.append(ok)
        s.carried_by = carried_by
        return s, torch.stack(picked, 1), drop

    def _feed(self, s: NurseryState, wants: torch.Tensor) -> tuple[NurseryState, torch.Tensor, torch.Tensor]:
        cfg = self.config
        wants = wants & s.mother_alive & (s.energy >= cfg.feed_cost)
        slots = torch.arange(self.A, device=self.device)
        hunger, energy = s.hunger, s.energy
        reachable = self._reachable_babies(s)
        fed, fed_own = [], []
        for i in range(self.A):
            eligible = reachable[:, i] & (hunger > 0) & wants[:, i, None]
            choice = self._choose_baby(eligible, i)
            ok = choice >= 0
            onehot = ok[:, None] & (slots[None] == choice[:, None])
            hunger = torch.where(onehot, (hunger - cfg.feed_amount).clamp(min=0), hunger)
            energy = torch.where(ok[:, None] & (slots[None] == i), energy - cfg.feed_cost, energy)
            fed.append(ok)
            fed_own.append(ok & (choice == i))
        s.hunger, s.energy = hunger, energy
        return s, torch.stack(fed, 1), torch.stack(fed_own, 1)

    def _follow_carrier(self, s: NurseryState) -> NurseryState:
        carried = s.carried_by >= 0
        carrier_pos = torch.gather(s.mother_pos, 1, s.carried_by.clamp(min=0)[..., None].expand(-1, -1, 2))
        s.baby_pos = torch.where(carried[..., None], carrier_pos, s.baby_pos)
        return s

    def _draws(self, s: NurseryState) -> dict[str, torch.Tensor]:
        """Every random number a step needs, from one hash call (see worlds.rng)."""
        A, P = self.A, self.P
        u = rng.uniform(s.key, s.t, _S_STEP, 6 * A + 2 * P)
        curious, baby_dir, pred_move, pred_dir, birth = u.split([A, A, P, P, 4 * A], dim=1)
        return {
            "curious": curious,
            "baby_dir": (baby_dir * N_MOVES).long(),
            "pred_move": pred_move,
            "pred_dir": (pred_dir * N_MOVES).long(),
            "birth": birth.reshape(-1, A, 4),
        }

    def scripted_baby_actions(
        self, s: NurseryState, draws: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(B, A) moves of the default baby brain: young babies crawl, often towards a hazard they can
        see; grown babies wander but never step into a hazard."""
        cfg = self.config
        draws = self._draws(s) if draws is None else draws
        rand_dir = draws["baby_dir"]
        curious = draws["curious"] < cfg.curiosity
        if self.K > 0:
            d = chebyshev(s.baby_pos[:, :, None], s.hazard_pos[:, None])  # (B, A, K)
            dist, nearest = d.min(-1)
            goal = torch.gather(s.hazard_pos, 1, nearest[..., None].expand(-1, -1, 2))
            toward = self._toward(s.baby_pos, goal)
            seen = dist <= cfg.baby_sight
            young = s.age < cfg.grow_age
            young_dir = torch.where(curious & seen, toward, rand_dir)
            grown_target = s.baby_pos + self.deltas[rand_dir]
            grown_dir = torch.where(self._at(s.cells, grown_target) == HAZARD, STAY, rand_dir)
            return torch.where(young, young_dir, grown_dir)
        return rand_dir

    def _move_babies(
        self, s: NurseryState, draws: dict[str, torch.Tensor], baby_actions: torch.Tensor | None
    ) -> tuple[NurseryState, torch.Tensor]:
        cfg = self.config
        moves = (
            self.scripted_baby_actions(s, draws)
            if baby_actions is None
            else baby_actions.to(self.device).long()
        )
        grown = s.age >= cfg.grow_age
        may_move = s.baby_alive & (s.carried_by < 0) & (grown | (s.age % cfg.baby_move_period == 0))
        target = s.baby_pos + self.deltas[torch.where(may_move, moves, STAY)]
        terrain = self._at(s.cells, target)
        s.baby_pos = torch.where((terrain == WALL)[..., None], s.baby_pos, target)
        return s, s.baby_alive & (terrain == HAZARD)

    def _grown_babies_eat(self, s: NurseryState) -> NurseryState:
        cfg = self.config
        food = s.food_timer.reshape(s.batch, -1)  # already a private copy made by _eat this step
        hunger = s.hunger
        for i in range(self.A):
            cell = s.baby_pos[:, i, 0] * self.W + s.baby_pos[:, i, 1]
            current = food.gather(1, cell[:, None])[:, 0]
            ok = (
                s.baby_alive[:, i]
                & (s.age[:, i] >= cfg.grow_age)
                & (current == 0)
                & (hunger[:, i] >= cfg.cry_threshold)
            )
            food.scatter_(1, cell[:, None], torch.where(ok, cfg.food_regrow, current)[:, None].to(food.dtype))
            hunger = torch.where(
                ok[:, None] & (torch.arange(self.A, device=self.device)[None] == i), 0, hunger
            )
        s.food_timer, s.hunger = food.view_as(s.food_timer), hunger
        return s

    def _move_predators(
        self, s: NurseryState, draws: dict[str, torch.Tensor]
    ) -> tuple[NurseryState, torch.Tensor]:
        """Predators stalk the nearest living baby; a bite sends them back to rest. -> bites (B, A)."""
        cfg = self.config
        if self.P == 0:
            return s, torch.zeros_like(s.hunger)
        rest = s.predator_rest
        active = rest == 0
        d = (s.predator_pos[:, :, None] - s.baby_pos[:, None]).abs().sum(-1)  # (B, P, A)
        d = torch.where(s.baby_alive[:, None, :], d, 10**6)
        nearest = d.argmin(-1)
        goal = torch.gather(s.baby_pos, 1, nearest[..., None].expand(-1, -1, 2))
        rand_dir = draws["pred_dir"]
        direction = torch.where(
            s.baby_alive.any(-1, keepdim=True), self._toward(s.predator_pos, goal), rand_dir
        )
        moving = active & (draws["pred_move"] < cfg.predator_speed)
        target = s.predator_pos + self.deltas[torch.where(moving, direction, STAY)]
        blocked = self._at(s.cells, target) != FLOOR
        pos = torch.where(blocked[..., None], s.predator_pos, target)
        on_baby = (pos[:, :, None] == s.baby_pos[:, None]).all(-1) & s.baby_alive[:, None] & active[..., None]
        bit = on_baby.any(-1)  # (B, P)
        s.predator_pos = torch.where(bit[..., None], s.predator_den, pos)
        s.predator_rest = torch.where(bit, cfg.predator_stun, (rest - 1).clamp(min=0))
        return s, on_baby.sum(1)

    def _births(self, s: NurseryState, birth_draws: torch.Tensor) -> NurseryState:
        """Mothers due to give birth get a baby on a random free neighbouring cell (or their own)."""
        cfg = self.config
        due = s.mother_alive & ~s.baby_alive & (s.births_left > 0) & (s.t[:, None] >= s.next_birth)
        # Try the four neighbours in a random order; fall back to the mother's own cell.
        order = torch.argsort(birth_draws, dim=-1, stable=True)  # (B, A, 4)
        spot = s.mother_pos
        for k in reversed(range(4)):
            cand = s.mother_pos + self.deltas[1 + order[..., k]]
            free = self._at(s.cells, cand) == FLOOR
            spot = torch.where(free[..., None], cand, spot)
        s.baby_pos = torch.where(due[..., None], spot, s.baby_pos)
        s.baby_alive = s.baby_alive | due
        s.hunger = torch.where(due, 0, s.hunger)
        s.health = torch.where(due, cfg.baby_health, s.health)
        s.age = torch.where(due, 0, s.age)
        s.carried_by = torch.where(due, -1, s.carried_by)
        s.births_left = s.births_left - due.long()
        s.has_given_birth = s.has_given_birth | due
        return s

    # ------------------------------------------------------------------ helpers
    def _at(self, grid: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """grid (B, H, W) read at pos (B, E, 2) -> (B, E)."""
        flat = (pos[..., 0] * self.W + pos[..., 1]).clamp(0, self.H * self.W - 1)
        return grid.reshape(grid.shape[0], -1).gather(1, flat)

    def _paint(self, grid: torch.Tensor, pos: torch.Tensor, value: int) -> torch.Tensor:
        flat = grid.reshape(grid.shape[0], -1)
        idx = pos[..., 0] * self.W + pos[..., 1]
        return flat.scatter(1, idx, torch.full_like(idx, value, dtype=grid.dtype)).view_as(grid)

    def _toward(self, pos: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Greedy move (STAY..LEFT) that closes the larger of the two gaps to goal."""
        dy, dx = (goal - pos).unbind(-1)
        vertical = torch.where(dy < 0, UP, DOWN)
        horizontal = torch.where(dx > 0, RIGHT, LEFT)
        move = torch.where(dy.abs() >= dx.abs(), vertical, horizontal)
        return torch.where((dy == 0) & (dx == 0), STAY, move)

    # ------------------------------------------------------------------ observations
    def observe(self, s: NurseryState) -> torch.Tensor:
        """(B, A, obs_dim) uint8: each mother's egocentric view (V, V, C), then SCALARS."""
        cfg = self.config
        crying = s.baby_alive & (s.hunger >= cfg.cry_threshold)  # (B, A)
        # Hearing: direction to the nearest crying baby, however far.
        rel = s.baby_pos[:, None] - s.mother_pos[:, :, None]  # (B, mothers, babies, 2)
        dist = torch.where(crying[:, None], rel.abs().amax(-1), 10**6)
        nearest = dist.argmin(-1)
        heard = crying.any(-1)[:, None].expand(-1, self.A)
        crel = torch.gather(rel, 2, nearest[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
        cry_dir = torch.where(heard[..., None], 128 + crel * 127 // max(self.H, self.W), 128)
        scalars = torch.stack(
            [
                s.energy * ON // cfg.energy_max,
                s.has_given_birth.long() * ON,
                self._carrying(s).long() * ON,
                *s.kin_marker.long().unbind(-1),
                heard.long() * ON,
                *cry_dir.unbind(-1),
                (s.t * ON // cfg.max_cycles).clamp(max=ON)[:, None].expand(-1, self.A),
            ],
            -1,
        )
        return self.render_obs(s, s.mother_pos, s.mother_alive, scalars, exclude_self_mother=True)

    def observe_babies(self, s: NurseryState) -> torch.Tensor:
        """(B, A, obs_dim) uint8 observations from each baby's place, in the mothers' format (the baby's
        satiety in the energy slot, its own marker as kin marker) so a mother's network can drive a baby."""
        cfg = self.config
        zeros = torch.zeros_like(s.hunger)
        scalars = torch.stack(
            [
                (cfg.hunger_max - s.hunger) * ON // cfg.hunger_max,
                zeros,
                (s.carried_by >= 0).long() * ON,
                *s.baby_marker.long().unbind(-1),
                zeros,
                zeros + 128,
                zeros + 128,
                (s.t * ON // cfg.max_cycles).clamp(max=ON)[:, None].expand(-1, self.A),
            ],
            -1,
        )
        return self.render_obs(s, s.baby_pos, s.baby_alive, scalars, exclude_self_mother=False)

    def render_obs(
        self,
        s: NurseryState,
        viewer_pos: torch.Tensor,
        viewer_alive: torch.Tensor,
        scalars: torch.Tensor,
        exclude_self_mother: bool,
    ) -> torch.Tensor:
        """(B, E, obs_dim) uint8 for viewers at viewer_pos (B, E, 2) with scalars (B, E, S).

        Layout: V*V view cells then `scalar_cells` cells holding the scalars, C channels each, so one
        table lookup writes the whole observation. Terrain and food come from one gather of cell codes;
        the few entities are scattered in with max-reduction (overlaps resolve deterministically)."""
        cfg, B, V, r = self.config, s.batch, self.V, self.config.view_radius
        C, VV = len(VIEW_CHANNELS), self.V * self.V
        E = viewer_pos.shape[1]
        codes = s.cells + 3 * (s.food_timer == 0).to(torch.uint8)
        codes = F.pad(codes, (r, r, r, r), value=WALL).view(B, -1)  # (B, Hp*Wp)
        base = viewer_pos[..., 0] * (self.W + 2 * r) + viewer_pos[..., 1]  # window's top-left, padded
        idx = (base[..., None] + self.window_offsets).view(B, -1)  # (B, E*(VV+scalar_cells))
        obs = self.code_table.index_select(0, codes.gather(1, idx).view(-1).int()).view(B * E, -1)

        crying = s.baby_alive & (s.hunger >= cfg.cry_threshold)
        ones = torch.full_like(s.baby_alive, ON, dtype=torch.uint8)
        others = s.mother_alive[:, None, :].expand(-1, E, -1)
        if exclude_self_mother:
            others = others & ~torch.eye(E, self.A, dtype=torch.bool, device=self.device)[None]
        ch = self.channel
        groups = [  # (positions (B, N, 2), present (B, E or 1, N), [(channel, value (B, N) uint8)])
            (s.mother_pos, others, [(ch["mother"], ones)]),
            (
                s.predator_pos,
                None,
                [(ch["predator"], torch.full_like(s.predator_rest, ON, dtype=torch.uint8))],
            ),
            (
                s.baby_pos,
                s.baby_alive[:, None],
                [
                    (ch["baby"], ones),
                    (ch["baby_marker_r"], s.baby_marker[..., 0]),
                    (ch["baby_marker_g"], s.baby_marker[..., 1]),
                    (ch["baby_marker_b"], s.baby_marker[..., 2]),
                    (ch["baby_crying"], crying.to(torch.uint8) * ON),
                ],
            ),
        ]
        index_parts, value_parts = [], []
        for pos, present, channels in groups:
            rel = pos[:, None] - viewer_pos[:, :, None] + r  # (B, E, N, 2)
            inside = ((rel >= 0) & (rel < V)).all(-1)
            if present is not None:
                inside = inside & present
            cell = (rel[..., 0] * V + rel[..., 1]).clamp(0, VV - 1) * C
            for channel, value in channels:
                index_parts.append(cell + channel)
                value_parts.append(value[:, None].expand_as(inside) * inside)
        index = torch.cat(index_parts, -1).view(B * E, -1)
        values = torch.cat(value_parts, -1).view(B * E, -1).to(torch.uint8)
        obs.scatter_reduce_(1, index, values, reduce="amax")
        obs = obs.view(B * E, VV + self.scalar_cells, C)
        obs[:, VV:] = F.pad(scalars, (0, self.scalar_cells * C - scalars.shape[-1])).view(B * E, -1, C)
        obs *= viewer_alive.view(-1, 1, 1)
        return obs.view(B, E, -1)

    def _carrying(self, s: NurseryState) -> torch.Tensor:
        """(B, A) bool: mother i is carrying some baby."""
        slots = torch.arange(self.A, device=self.device)
        return (s.carried_by[:, None, :] == slots[None, :, None]).any(-1)
