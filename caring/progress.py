"""A training run seen while it runs, for `caring train` and `caring demo`: a live line on a terminal,
plain progress lines when the output goes to a file (`caring train ... > log 2>&1` must not stay silent
for 20 minutes), TensorBoard event files (`caring.tblog`), and the run's plots redrawn at checkpoints.

Nothing here may end a run that trains well: a plot or a TensorBoard write that fails is one warning
line, and training goes on (metrics.csv, the source of truth, is the trainer's and is not touched here).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm

from caring.plots import plot_run
from caring.tblog import TensorBoardLog, summary_writer

PROGRESS_EVERY_S = 30.0  # a log line (and at most one plot refresh) per half minute: ~1% of a run's time


def warn(message: str) -> None:
    """One warning line on stderr, above a live progress line if there is one."""
    tqdm.write(f"caring: warning: {message}", file=sys.stderr)


def plot(out: Path) -> list[Path]:
    """The run's plots (`caring.plots.plot_run`), or none and one warning line: a plot never ends a run."""
    try:
        return plot_run(out)
    except Exception as err:  # a bad value, a full disk, matplotlib itself: all only cost the picture
        warn(f"could not draw the plots of {out}: {err}")
        return []


def clock(seconds: float) -> str:
    """H:MM:SS (a log line's elapsed time and ETA)."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def mean(values: list[float]) -> float:
    """Mean of the finite values (NaN: an update in which no episode ended), NaN if there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


class LogLines:
    """Plain progress lines for a log file: at the session's first update, then one every `every_s`
    seconds, and at the last. Speed and ETA are this session's averages; the task's headline (nursery:
    baby_survival) and harm_rate are means over the updates since the previous line, so that none is
    missed between lines; beta1 is its current value."""

    def __init__(self, trainer: Any, every_s: float, stream: TextIO):
        self.stream, self.every_s, self.per_update = stream, every_s, trainer.per_update
        self.first_update, self.start, self.printed = trainer.update, time.monotonic(), -math.inf
        self.since: dict[str, list[float]] = {trainer.task.headline: [], "harm_rate": []}

    def __call__(self, update: int, total: int, row: dict, speed: float) -> None:
        for name, values in self.since.items():
            values.append(float(row[name]))
        now = time.monotonic()
        if update != self.first_update + 1 and update != total and now - self.printed < self.every_s:
            return
        elapsed = now - self.start
        rate = (update - self.first_update) * self.per_update / elapsed
        headline, harm = (mean(values) for values in self.since.values())
        metrics = "  ".join(
            f"{name} {value:.3f}" if math.isfinite(value) else f"{name} n/a"
            for name, value in zip(self.since, (headline, harm), strict=True)
        )
        print(
            f"{time.strftime('%H:%M:%S')} update {update}/{total} ({update / total:.0%})  "
            f"{row['agent_steps']:,} agent-steps  {rate:,.0f} agent-steps/s  elapsed {clock(elapsed)}  "
            f"ETA {clock((total - update) * self.per_update / rate)}  {metrics}  beta1 {row['beta1']:.3f}",
            file=self.stream,
            flush=True,
        )
        self.printed = now
        for values in self.since.values():
            values.clear()

    def close(self) -> None:
        """Nothing to close: every line was flushed as it was written."""


class LiveLine:
    """A terminal's one live line (tqdm: updates, rate, ETA) with the latest update's speed, headline,
    harm rate and beta1."""

    def __init__(self, trainer: Any, stream: TextIO):
        self.headline = trainer.task.headline
        self.bar = tqdm(
            total=trainer.updates_total,
            initial=trainer.update,
            unit="update",
            file=stream,
            dynamic_ncols=True,
        )

    def __call__(self, update: int, total: int, row: dict, speed: float) -> None:
        self.bar.update(1)
        self.bar.set_postfix(
            steps_s=f"{speed:,.0f}",
            **{self.headline: f"{row[self.headline]:.2f}"},
            harm=f"{row['harm_rate']:.3f}",
            beta1=f"{row['beta1']:.2f}",
        )

    def close(self) -> None:
        self.bar.close()


class Cockpit:
    """`Trainer.run`'s progress callback for the CLI: the live line or log lines (by whether `stream`
    is a terminal), TensorBoard (if `tensorboard` and the package is installed), and the plots redrawn
    at a checkpoint once `every_s` seconds have passed since the last drawing. Use it as a context
    manager, so that the line and the event file are closed however the run ends."""

    def __init__(
        self,
        trainer: Any,
        every_s: float = PROGRESS_EVERY_S,
        tensorboard: bool = True,
        stream: TextIO | None = None,
    ):
        stream = stream or sys.stdout
        self.trainer, self.every_s, self.plotted = trainer, every_s, time.monotonic()
        self.board = self._board(trainer) if tensorboard else None
        if trainer.update < trainer.updates_total:
            board = f"; TensorBoard: tensorboard --logdir {self.board.directory}" if self.board else ""
            print(
                f"training into {trainer.out}: updates {trainer.update + 1} to {trainer.updates_total} "
                f"of {trainer.per_update:,} agent-steps each{board}",
                file=stream,
                flush=True,
            )
        self.display = LiveLine(trainer, stream) if stream.isatty() else LogLines(trainer, every_s, stream)

    @staticmethod
    def _board(trainer: Any) -> TensorBoardLog | None:
        """This session's TensorBoard log, or None: not installed, or broken (one warning line)."""
        try:
            writer = summary_writer()
            return TensorBoardLog(trainer, writer) if writer else None
        except Exception as err:  # e.g. a tensorboard whose protobuf does not match: only the view is lost
            warn(f"TensorBoard logging is off: {err}")
            return None

    def __call__(self, update: int, total: int, row: dict, speed: float) -> None:
        self.display(update, total, row, speed)
        if self.board is not None:
            try:
                self.board.log(row, speed)
            except Exception as err:
                warn(f"TensorBoard logging stopped at update {update}: {err}")
                self.board = None
        at_checkpoint = update % self.trainer.config.checkpoint_every == 0 and update < total
        if at_checkpoint and time.monotonic() - self.plotted >= self.every_s:
            plot(self.trainer.out)  # the last update's plots are the caller's (`plot`, after the run)
            self.plotted = time.monotonic()

    def close(self) -> None:
        self.display.close()
        if self.board is not None:
            self.board.close()

    def __enter__(self) -> Cockpit:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
