"""Figures of `caring probe` and `caring retarget`: assays, attribution shares, probes, ablation and
dose-response curves. Each function takes the JSON-ready results and writes one PNG. The backend is
left to matplotlib (Agg when headless), so notebooks show the same figures inline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from caring.plots import save_figure


def plot_assays(scores: dict[str, dict[str, dict[str, float]]], path: Path) -> Path:
    """scores: policy label -> situation -> {"score", "ci95_half"}; grouped horizontal bars."""
    policies = list(scores)
    situations = list(next(iter(scores.values())))
    fig, ax = plt.subplots(figsize=(8, 0.12 * len(situations) * len(policies) + 1.5))
    height = 0.8 / len(policies)
    for i, policy in enumerate(policies):
        ys = [j + i * height for j in range(len(situations))]
        ax.barh(
            ys,
            [scores[policy][s]["score"] for s in situations],
            height,
            xerr=[scores[policy][s]["ci95_half"] for s in situations],
            label=policy,
        )
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(situations))], situations)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("P(protective action)  (95% CI)")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)


def plot_attribution(ig: dict[str, dict[str, float]], path: Path) -> Path:
    situations = list(ig)
    fig, ax = plt.subplots(figsize=(8, 4))
    keys = (
        ("care_baby_share", "care log-prob"),
        ("value_baby_share", "V_task"),
        ("input_share", "input itself"),
    )
    width = 0.8 / len(keys)
    for i, (key, label) in enumerate(keys):
        ax.bar(
            [j + i * width for j in range(len(situations))],
            [ig[s][key] for s in situations],
            width,
            label=label,
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(situations))], situations, rotation=35, ha="right")
    ax.set_ylabel("share of |attribution| on baby features")
    ax.set_title("Integrated gradients (zero baseline)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_probes(probes: dict[str, dict[str, dict[str, float]]], kinds: dict[str, str], path: Path) -> Path:
    facts = list(probes)
    fig, axes = plt.subplots(1, len(facts), figsize=(4.2 * len(facts), 3.6), squeeze=False)
    for ax, fact in zip(axes[0], facts, strict=True):
        sites = list(probes[fact])
        width = 0.27
        for i, control in enumerate(("trained", "shuffled", "random_net")):
            ax.bar(
                [j + i * width for j in range(len(sites))],
                [probes[fact][s][control] for s in sites],
                width,
                label=control,
            )
        ax.set_xticks(
            [j + width for j in range(len(sites))],
            [s.removeprefix("hook_") for s in sites],
            rotation=40,
            ha="right",
        )
        regression = kinds[fact] == "regression"
        ax.set_ylabel("held-out R²" if regression else "held-out balanced accuracy")
        ax.set_ylim(min(0.0, *(probes[fact][s]["shuffled"] for s in sites)) if regression else 0.4, 1.0)
        ax.set_title(fact)
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, path)


def plot_ablation(curve: dict[str, Any], path: Path) -> Path:
    """Top-k ablation against the band (min..max) and median of the random unit sets, per metric."""
    metrics = (
        ("baby_survival", "baby survival"),
        ("mother_survival", "mother survival"),
        ("care_assay", "care assays"),
        ("self_assay", "self-care assays"),
    )
    ks = [p["k"] for p in curve["points"]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4))
    for ax, (key, label) in zip(axes, metrics, strict=True):
        randoms = [sorted(r[key] for r in p["random"]) for p in curve["points"]]
        if all(randoms):
            ax.fill_between(
                ks,
                [r[0] for r in randoms],
                [r[-1] for r in randoms],
                alpha=0.25,
                label=f"random sets (n={len(randoms[0])}, min-max)",
            )
            ax.plot(ks, [r[len(r) // 2] for r in randoms], "--", color="grey", label="random median")
        ax.plot(ks, [p["top"][key] for p in curve["points"]], "o-", label=f"top-k by {curve['ranking']}")
        ax.set_xlabel("units ablated")
        ax.set_title(label)
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{curve['mode']}-ablating k of the {curve['units']} units of {curve['site']}", y=1.02)
    return save_figure(fig, path)


def plot_dose_response(report: dict[str, Any], path: Path) -> Path:
    """Foster- and own-baby survival against the steering or target-edit coefficient (with the random
    controls), the number of patched units, or the fine-tuning steps; the untreated levels as dotted lines."""
    fig, ax = plt.subplots(figsize=(6, 4))
    if report["method"] == "finetune":
        xs = [p["agent_steps"] for p in report["finetune_curve"]]
        ax.plot(xs, [p["baby_survival"] for p in report["finetune_curve"]], "o-", label="foster baby")
        ax.set_xlabel("fine-tuning agent-steps")
    else:
        key = "units" if report["method"] == "patch" else "coefficient"
        rows = report["dose_response"]
        xs = [r[key] for r in rows]
        ax.plot(xs, [r["foster"]["baby_survival"] for r in rows], "o-", label="foster baby")
        ax.plot(xs, [r["own"]["baby_survival"] for r in rows], "s-", label="own baby (same intervention)")
        if rows and rows[0].get("random"):
            for i in range(len(rows[0]["random"])):
                ax.plot(
                    xs,
                    [r["random"][i]["baby_survival"] for r in rows],
                    color="grey",
                    alpha=0.5,
                    label="foster baby, random edit (same norm)" if i == 0 else None,
                )
        ax.set_xlabel(
            {
                "steer": "steering coefficient",
                "rewrite": "coefficient of the target edit (1 = fitted)",
                "imprint": "coefficient of the imprint (1 = her kin marker read as the new one)",
                "patch": "patched units (top-k care units)",
            }[report["method"]]
        )
    untreated = report["before_selection"]  # the same selection episodes as the curves
    ax.axhline(untreated["foster"]["baby_survival"], ls=":", color="C0", label="foster baby, untreated")
    ax.axhline(untreated["own"]["baby_survival"], ls=":", color="C1", label="own baby, untreated")
    ax.set_ylabel("baby survival (selection episodes)")
    ax.set_ylim(0, 1)
    where = (
        "her kin-marker inputs"
        if report["method"] in ("rewrite", "imprint")
        else report.get("site", "all weights")
    )
    ax.set_title(f"{report['method']} at {where}")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_roles(roles: dict[str, Any], path: Path) -> Path:
    """Each unit's drop of care against its drop of recognition when ablated alone: units on one axis
    carry one role, units on the diagonal both."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    recognition, care = roles["drops"]["recognition"], roles["drops"]["care"]
    ax.scatter(recognition, care, s=12, alpha=0.7)
    for unit in roles["top_recognition_and_care"]:
        ax.annotate(str(unit), (recognition[unit], care[unit]), fontsize=7)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("drop of recognition (her marker minus a never-seen one)")
    ax.set_ylabel("drop of care (her own baby)")
    ax.set_title(f"units of {roles['site']}, each ablated alone")
    return save_figure(fig, path)


def plot_transplant(report: dict[str, Any], path: Path) -> Path:
    """The recipient's baby and own survival against the transplant's coefficient (selection episodes),
    her untreated levels and the donor's as dotted lines."""
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = report["dose_response"]
    xs = [r["coefficient"] for r in rows]
    ax.plot(xs, [r["baby_survival"] for r in rows], "o-", label="her babies")
    ax.plot(xs, [r["mother_survival"] for r in rows], "s-", label="herself")
    ax.axhline(report["donor_untreated"]["baby_survival"], ls=":", color="C2", label="donor's babies")
    ax.axhline(report["before_selection"]["baby_survival"], ls=":", color="C0", label="her babies, untreated")
    ax.set_xlabel(f"coefficient of the donor's {len(report['units'])} care units ({report['method']})")
    ax.set_ylabel("survival (selection episodes)")
    ax.set_ylim(0, 1)
    ax.set_title("transplant into a mother who never cared")
    ax.legend(fontsize=7)
    return save_figure(fig, path)
