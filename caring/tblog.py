"""TensorBoard event files of a training run, in RUN/tb/: every metrics.csv column of every update (and
the update's speed), at the update's agent-steps, for watching a run live with `tensorboard --logdir`.

metrics.csv stays the source of truth, and TensorBoard must agree with it after any kill. A resume
cuts the CSV back to its last checkpoint's update U, so each training session opens a fresh event file
with TensorBoard's `purge_step` at U's agent-steps (events a killed session logged from U on are
hidden, in every older file) and logs U again from the CSV: a kill after checkpoint U but before U
reached TensorBoard leaves no gap, and one after rows past U leaves no duplicates (a run that had no
event files yet, say TensorBoard was installed half-way, gets all of its rows from the CSV; updates of
a session run with --no-tensorboard after that stay out). A torn record at
the end of a killed session's file is skipped by TensorBoard's readers. TensorBoard reads a run's
event files in name order, and a name begins with the second its file was opened, so a session opened
within the same second as the one before waits for the next (a purge must come after what it purges;
a clock set back further than that is not guarded against). Needs the optional
`tensorboard` (or `tensorboardX`) package: `pip install -e '.[tensorboard]'`.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

TB_DIR = "tb"
STEP = "agent_steps"  # every column but this one is a scalar plotted against it


def summary_writer() -> type | None:
    """TensorBoard's SummaryWriter class (torch's, else tensorboardX's), or None if neither is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            return None
    return SummaryWriter


class TensorBoardLog:
    """One training session's event file. `log(row, speed)` after each update; `close()` at the end."""

    def __init__(self, trainer: Any, writer_class: type):
        self.directory = Path(trainer.out) / TB_DIR
        newest = newest_second(self.directory)
        wait = newest + 1 - time.time()
        if 0 < wait <= 1:
            time.sleep(wait)
        resumed_at = trainer.update  # the checkpoint's update: the CSV's last row (0: a fresh start)
        first = max(resumed_at, 1) if newest else 1  # the first update this session logs
        self.writer = writer_class(str(self.directory), purge_step=first * trainer.per_update)
        if resumed_at:
            for row in rows_from(Path(trainer.out) / "metrics.csv", first):
                self.log(row)

    def log(self, row: dict[str, Any], speed: float | None = None) -> None:
        """Write one update's row (values as the trainer made them or as the CSV holds them), flushed so
        that TensorBoard shows it at once and a kill loses nothing logged before it."""
        step = int(row[STEP])
        for name, value in row.items():
            if name != STEP:
                self.writer.add_scalar(name, float(value), step)
        if speed is not None and math.isfinite(speed):
            self.writer.add_scalar("agent_steps_per_s", speed, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def newest_second(directory: Path) -> int:
    """The second the newest event file in `directory` was opened, by its name
    (events.out.tfevents.SECONDS.HOST.PID...), 0 if there is none."""
    stamps = [p.name.split(".")[3] for p in directory.glob("events.out.tfevents.*")]
    return max((int(stamp) for stamp in stamps if stamp.isdigit()), default=0)


def rows_from(path: Path, update: int) -> list[dict[str, str]]:
    """A CSV log's rows from `update` on (a resumed run's log ends with its checkpoint's row:
    `checkpoints.restore` cut it back to that)."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f))[update - 1 :]
