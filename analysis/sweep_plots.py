"""Plots of a finished (or partly finished) sweep: bars with CIs per method, the headline in every
evaluation world side by side, and learning curves with bootstrap bands over seeds for the trained
methods."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from caring.plots import save_figure, smooth


def plot_sweep(experiment, out: Path, summary: dict, assay_labels: dict[str, str]) -> list[Path]:
    """summary_bars.png: every column of the summary table but the training ones; headline_by_world.png:
    the headline of each method in each evaluation world; pareto.png: harm against the headline, where
    the first evaluation has both; learning_curves.png: the task's training curves and β₁."""
    import matplotlib.pyplot as plt

    task = experiment.task
    bars = [
        (e.key(metric), task.eval_metrics[metric][0] + (f" ({e.name})" if e.name else ""))
        for e in experiment.evaluations
        for metric in e.columns
    ]
    curves_shown = (*task.curves, ("beta1", "β₁"))
    written = []
    methods = [m for m in experiment.methods if m in summary]
    fig, axes = plt.subplots(1, len(bars), figsize=(4.2 * len(bars), 3.8), squeeze=False)
    for ax, (key, label) in zip(axes[0], bars, strict=True):
        means, err = _means(summary, methods, key)
        ax.bar(range(len(methods)), means, yerr=err, capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right", fontsize=8)
        ax.set_title(label)
    fig.suptitle(f"{experiment.name}: mean over seeds, 95% bootstrap CI")
    written.append(save_figure(fig, out / "summary_bars.png"))
    written.append(_headline_by_world(experiment, out, summary, methods))
    if experiment.grid():
        written.append(_across_grid(experiment, out, summary, assay_labels))
    first = experiment.evaluations[0]
    if {task.harm_metric, experiment.headline} <= set(first.columns):
        written.append(_pareto(experiment, out, summary, methods))

    curves = {m: _curves(out / "runs" / m, curves_shown) for m in methods}
    curves = {m: c for m, c in curves.items() if c is not None}
    if curves:
        fig, axes = plt.subplots(len(curves_shown), 1, figsize=(7.5, 2.6 * len(curves_shown)), sharex=True)
        for method, (steps, by_column) in curves.items():
            for ax, (column, label) in zip(axes, curves_shown, strict=True):
                mean, lo, hi = _band(by_column[column])
                (line,) = ax.plot(steps, mean, label=method)
                ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
                ax.set_ylabel(label)
        axes[0].legend(fontsize=8)
        axes[-1].set_xlabel("agent-steps (millions)")
        fig.suptitle(f"{experiment.name}: mean over seeds (10-update trailing means), 95% bootstrap band")
        written.append(save_figure(fig, out / "learning_curves.png"))
    plt.close("all")
    return written


def _headline_by_world(experiment, out: Path, summary: dict, methods: list[str]) -> Path:
    """Grouped bars: per method, its headline in each evaluation world side by side (how much of it
    carries over to the held-out worlds), with the 95% bootstrap CI of the mean over seeds."""
    import matplotlib.pyplot as plt

    evaluations = experiment.evaluations
    width = 0.8 / len(evaluations)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(methods) * len(evaluations) ** 0.5), 3.8))
    for i, evaluation in enumerate(evaluations):
        means, err = _means(summary, methods, evaluation.key(experiment.headline))
        x = np.arange(len(methods)) + (i - (len(evaluations) - 1) / 2) * width
        ax.bar(x, means, width, yerr=err, capsize=2, label=evaluation.name or "training world", alpha=0.85)
    ax.set_xticks(range(len(methods)), methods, rotation=45, ha="right", fontsize=8)
    label = experiment.task.eval_metrics[experiment.headline][0]
    ax.set_ylabel(label)
    ax.legend(fontsize=8, title="evaluation", title_fontsize=8)
    ax.set_title(
        f"{experiment.name}: {label} per evaluation world (mean over seeds, 95% bootstrap CI)", fontsize=9
    )
    return save_figure(fig, out / "headline_by_world.png")


def _pareto(experiment, out: Path, summary: dict, methods: list[str]) -> Path:
    """pareto.png: one point per method, the task's harm metric against its headline in the first
    evaluation, with both 95% bootstrap CIs as bars: which settings buy safety with success."""
    import matplotlib.pyplot as plt

    task, first = experiment.task, experiment.evaluations[0]
    x, x_err = _means(summary, methods, first.key(task.harm_metric))
    y, y_err = _means(summary, methods, first.key(experiment.headline))
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for i, method in enumerate(methods):
        ax.errorbar(x[i], y[i], xerr=x_err[:, i : i + 1], yerr=y_err[:, i : i + 1], fmt="o", capsize=3)
        ax.annotate(method, (x[i], y[i]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(task.eval_metrics[task.harm_metric][0] + " (lower is safer)")
    ax.set_ylabel(task.eval_metrics[experiment.headline][0])
    where = f" ({first.name})" if first.name else ""
    ax.set_title(
        f"{experiment.name}{where}: harm against {ax.get_ylabel()}\n(mean over seeds, 95% CI)", fontsize=9
    )
    return save_figure(fig, out / "pareto.png")


def _across_grid(experiment, out: Path, summary: dict, assay_labels: dict[str, str]) -> Path:
    """across_worlds.png for a [worlds] grid: the headline and each assay score of every method across
    the grid's worlds (file order), mean over seeds with 95% bootstrap CIs."""
    import matplotlib.pyplot as plt

    grid, worlds = experiment.grid(), list(experiment.worlds)
    label = experiment.task.eval_metrics[experiment.headline][0]
    panels = [(experiment.evaluations[0].key(experiment.headline), label)]
    panels += [(key, assay_labels[key]) for key in experiment.assay_keys()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    x = np.arange(len(worlds))
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        for i, (base, by_world) in enumerate(grid.items()):
            names = [by_world.get(w, "") for w in worlds]
            means, err = _means({n: summary.get(n, {}) for n in names}, names, key)
            shift = (i - (len(grid) - 1) / 2) * 0.06  # keep overlapping error bars apart
            ax.errorbar(x + shift, means, yerr=err, marker="o", capsize=3, label=base)
        ax.set_xticks(x, worlds, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{experiment.name}: across the worlds of its grid (mean over seeds, 95% bootstrap CI)")
    return save_figure(fig, out / "across_worlds.png")


def _means(summary: dict, methods: list[str], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(means (M,), error-bar lengths (2, M)) of a summary key per method; NaN where a method lacks it."""
    nan = {"mean": np.nan, "mean_ci95": [np.nan, np.nan]}
    stats = [summary[m].get(key, nan) for m in methods]
    means = np.array([s["mean"] for s in stats], dtype=float)
    cis = np.array([s["mean_ci95"] for s in stats], dtype=float).reshape(-1, 2)
    return means, np.abs(cis.T - means[None])


def _curves(method_dir: Path, shown: tuple) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """(steps (U,), {column: (seeds, U)}) over the seeds' common length, smoothed per seed."""
    runs = [list(csv.DictReader(p.open())) for p in sorted(method_dir.glob("seed*/metrics.csv"))]
    runs = [r for r in runs if r]
    if not runs:
        return None
    length = min(len(r) for r in runs)
    steps = np.array([float(row["agent_steps"]) / 1e6 for row in runs[0][:length]])
    by_column = {
        column: np.array([smooth([float(row[column]) for row in r[:length]]) for r in runs])
        for column, _ in shown
    }
    return steps, by_column


def _band(values: np.ndarray, resamples: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds per point and a percentile-bootstrap 95% band; NaN where no seed has a value."""
    rng = np.random.default_rng(0)
    n = values.shape[0]
    draws = values[rng.integers(0, n, size=(resamples, n))]  # (resamples, n, U)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN points before the first episode ends
        means = np.nanmean(draws, axis=1)
        return np.nanmean(values, 0), np.nanquantile(means, 0.025, 0), np.nanquantile(means, 0.975, 0)
