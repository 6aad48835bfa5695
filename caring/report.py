"""Markdown tables of evaluation results, for the README and run reports."""

from __future__ import annotations

COLUMNS = (
    ("baby survival", "baby_survival_rate", "{:.3f}"),
    ("95% CI", "baby_survival_ci95", "[{:.3f}, {:.3f}]"),
    ("baby lifetime", "baby_lifetime_mean", "{:.1f}"),
    ("harm / ep", "harm_events_per_episode", "{:.2f}"),
    ("mother survival", "mother_survival_rate", "{:.3f}"),
    ("feeds / ep", "feeds_per_episode", "{:.1f}"),
    ("carry steps / ep", "carry_steps_per_episode", "{:.0f}"),
    ("guards / ep", "guards_per_episode", "{:.1f}"),
)


def scripted_table(rows: list[dict]) -> str:
    """One row per policy; baby deaths split by cause in the last column."""
    head = ["policy", *(c[0] for c in COLUMNS), "deaths: predator / hazard / hunger"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["policy"]]
        for _, key, fmt in COLUMNS:
            value = row[key]
            cells.append(fmt.format(*value) if isinstance(value, list) else fmt.format(value))
        d = row["baby_deaths"]
        cells.append(f"{d['predator']} / {d['hazard']} / {d['hunger']}")
        lines.append("| " + " | ".join(cells) + " |")
    episodes, seed = rows[0]["episodes"], rows[0]["seed"]
    return "\n".join(lines) + f"\n\n{episodes} episodes per policy, seed {seed}, default nursery config.\n"
