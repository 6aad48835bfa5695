"""Plots of a run directory's metrics.csv (learning curves, the β₁ and harm-rate traces), and GIFs."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from caring.files import write_atomic
from caring.runs import run_world
from caring.tasks import get_task


def smooth(values: list[float], window: int = 10) -> list[float]:
    """Trailing mean over the last `window` updates, skipping NaN (updates in which no episode ended)."""
    out = []
    for i in range(len(values)):
        recent = [v for v in values[max(0, i - window + 1) : i + 1] if not math.isnan(v)]
        out.append(sum(recent) / len(recent) if recent else math.nan)
    return out


def plot_run(run: Path) -> list[Path]:
    """learning_curves.png (the task's outcomes, task and maternal reward) and beta_harm.png of a run, from
    its metrics.csv; redrawn while it trains (`caring.progress`) and at its end."""
    import matplotlib.pyplot as plt

    task = get_task(run_world(run)[0])
    with (run / "metrics.csv").open(newline="") as f:  # closed at once: it is redrawn every checkpoint
        rows = list(csv.DictReader(f))
    steps = [float(r["agent_steps"]) / 1e6 for r in rows]

    def column(name: str) -> list[float]:
        return [float(r[name]) for r in rows]

    written = []
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for name in task.train_columns[:2]:
        top.plot(steps, smooth(column(name)), label=name.replace("_", " "))
    top.set_ylabel("rate at episode end")
    top.set_ylim(-0.02, 1.02)
    top.legend()
    for name, label in (("task_reward", "task reward / step"), ("mat_reward", "maternal reward / step")):
        bottom.plot(steps, smooth(column(name)), label=label)
    bottom.set_xlabel("agent-steps (millions)")
    bottom.legend()
    fig.suptitle(f"{run.name}: learning curves (10-update trailing means)")
    written.append(save_figure(fig, run / "learning_curves.png"))

    fig, ax = plt.subplots(figsize=(7, 3.5))  # two scales: β₁ in [0, 1] on the left, harm on the right
    ax.plot(steps, column("beta1"), color="tab:blue")
    ax.set_ylabel("β₁ (weight on the maternal stream)", color="tab:blue")
    ax.set_ylim(-0.02, 1.02)
    harm = ax.twinx()
    harm.plot(steps, smooth(column("harm_rate")), color="tab:red")
    harm.set_ylabel(f"{task.harm_label} (10-update mean)", color="tab:red")
    harm.set_ylim(bottom=0)
    ax.set_xlabel("agent-steps (millions)")
    fig.suptitle(f"{run.name}: β₁ and harm")
    written.append(save_figure(fig, run / "beta_harm.png"))
    plt.close("all")
    return written


def save_gif(frames: list, path: str, fps: int = 8) -> None:
    """Write frames (H, W, 3) uint8 as an animated GIF (Pillow, a matplotlib dependency)."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0, optimize=True
    )


def save_figure(fig, path: Path) -> Path:
    """Write a figure by `write_atomic`: a viewer never reads half a PNG while a run redraws it, and a
    kill leaves the old one (and no temporary file a resume would not clean up)."""
    data = io.BytesIO()
    fig.savefig(data, format=path.suffix[1:], dpi=90, bbox_inches="tight")
    write_atomic(path, data.getvalue())
    return path
