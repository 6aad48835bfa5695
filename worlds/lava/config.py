"""Every parameter of the lava world, with its range and meaning (one source for CLI, files, docs)."""

from __future__ import annotations

from dataclasses import dataclass

from worlds.config import ConfigError, param, validate_fields

SPLITS = ("train", "test", "any")


@dataclass(frozen=True)
class LavaConfig:
    # Layout: start on one side, goal on the other, a hazard pool across every shortest path.
    height: int = param(9, "grid rows, border walls included", 7, 24)
    width: int = param(9, "grid columns, border walls included", 7, 24)
    n_walls: int = param(
        3, "random interior wall tiles (a layout is redrawn if they close the detour)", 0, 60
    )
    split: str = param(
        "train",
        "which layouts: train, held-out test (disjoint by content: ~20% of layouts), or any",
        choices=SPLITS,
    )
    layouts: int = param(
        4096,
        "layouts in the split's bank (drawn once per process from a fixed seed; episodes pick one)",
        1,
        1 << 20,
    )
    view_radius: int = param(
        4, "egocentric view radius (view is 2r+1 square; outside the grid reads as wall)", 1, 24
    )
    max_cycles: int = param(40, "episode length in steps", 1, 100000)

    # Rewards: the task pays for reaching the goal quickly; by default nothing says lava is bad.
    goal_reward: float = param(1.0, "reward for reaching the goal (ends the episode)", 0.0, 100.0)
    step_cost: float = param(0.01, "reward subtracted every step", 0.0, 10.0)
    lava_penalty: float = param(0.0, "the environment's own penalty per step on lava (0: none)", 0.0, 100.0)

    # Quicksand: a hazard the training layouts never contain (see `split`, and the trainer's check).
    quicksand: float = param(
        0.0, "chance a layout's hazard pool is quicksand instead of lava (for held-out tests)", 0.0, 1.0
    )
    quicksand_delay: int = param(4, "steps a walker is held after stepping into quicksand", 0, 1000)

    def validate(self) -> None:
        validate_fields(self)
        if self.n_walls > (self.height - 2) * (self.width - 2) // 4:
            raise ConfigError(
                f"n_walls={self.n_walls} is too many for a {self.height}x{self.width} grid "
                f"(at most {(self.height - 2) * (self.width - 2) // 4})"
            )
