"""`caring compare RUN RUN [RUN ...] --out DIR`: did gradient descent find the same caring drive in mothers
trained from different seeds?

All mothers are read on the same states (the expert's rollouts in their shared world), at one hidden
layer. Three comparisons per pair of mothers, each beside the floor a freshly initialised network of the
same shape gives:

- representational similarity: linear CKA of their activations (1 = the same up to rotation and scale);
- probe directions: each mother's ridge direction for each regression fact of `analysis.probes.FACTS`,
  compared after aligning one layer onto the other (orthogonal Procrustes on half the shared states,
  the probes on the other half): the cosine of her direction and the other's aligned one;
- unit roles: every unit's drop of recognition, care and self-care when ablated alone
  (`analysis.localize.role_effects`); units are matched across the two mothers by activation
  correlation (greedy, one to one), and the correlation of matched units' care drops says whether the
  same units do the same job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from analysis import assays
from analysis.circuits import check_hidden_site, load_run
from analysis.localize import ROLES, role_effects
from analysis.probes import FACTS, activations, collect
from caring.files import write_atomic, write_json
from caring.plots import save_figure
from caring.policies import load_policy
from worlds.config import ConfigError, param, validate_fields


@dataclass(frozen=True)
class CompareSettings:
    site: str = param("hook_trunk_2", "hidden layer compared")
    episodes: int = param(64, "expert rollout episodes whose states every mother is read on", 2, 10**6)
    instances: int = param(32, "instances of each assay situation (unit roles)", 2, 10**5)
    ridge: float = param(1e-2, "probe directions: ridge penalty on standardised activations", 0.0, 1e6)
    seed: int = param(0, "seed of the rollouts, batteries and the untrained network", 0, 2**31 - 1)

    def validate(self) -> None:
        validate_fields(self)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two activation matrices (N, p) and (N, q) on the same rows."""
    x = (x - x.mean(0)).double()
    y = (y - y.mean(0)).double()
    cross = (y.T @ x).square().sum()
    norms = (x.T @ x).square().sum().sqrt() * (y.T @ y).square().sum().sqrt()
    return float(cross / norms.clamp(min=1e-30))


def procrustes(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(p, p) the rotation R minimising ||source R - target|| over centred rows (same width p)."""
    u, _, v = torch.linalg.svd((source - source.mean(0)).double().T @ (target - target.mean(0)).double())
    return u @ v


def probe_direction(x: torch.Tensor, y: torch.Tensor, ridge: float) -> torch.Tensor:
    """(p,) unit-norm ridge direction of fact y (N,) on centred activations x (N, p)."""
    xc = (x - x.mean(0)).double()
    gram = xc.T @ xc + ridge * len(x) * torch.eye(x.shape[1], dtype=xc.dtype)
    w = torch.linalg.solve(gram, xc.T @ (y.double() - y.double().mean()))
    return w / w.norm().clamp(min=1e-30)


def aligned_cosines(
    a: torch.Tensor, b: torch.Tensor, facts: dict[str, torch.Tensor], ridge: float
) -> dict[str, float]:
    """Per fact: cosine of a's probe direction and b's, b's mapped into a's space (R^T w_b, R aligning b
    onto a). The rotation is fitted on the even rows and the probes on the odd ones: fitted on the same
    rows, both would read the one cross-covariance of a and b, and even a b of pure noise would align
    (R^T w_b is then a positive semi-definite map of w_a)."""
    rotation = procrustes(b[0::2], a[0::2])
    return {
        fact: float(
            probe_direction(a[1::2], y[1::2], ridge) @ (rotation.T @ probe_direction(b[1::2], y[1::2], ridge))
        )
        for fact, y in facts.items()
    }


def match_units(a: torch.Tensor, b: torch.Tensor) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of a's units to b's by the correlation of their activations (most
    correlated pair first; units that never vary match nothing)."""
    za = (a - a.mean(0)) / a.std(0).clamp(min=1e-8)
    zb = (b - b.mean(0)) / b.std(0).clamp(min=1e-8)
    corr = (za.T @ zb / max(1, len(a) - 1)).double()
    live = (a.std(0) > 1e-8)[:, None] & (b.std(0) > 1e-8)[None]
    corr = torch.where(live, corr, torch.tensor(-2.0, dtype=corr.dtype))
    pairs = []
    for _ in range(min(corr.shape)):
        best = int(corr.argmax())
        i, j = divmod(best, corr.shape[1])
        if corr[i, j] <= -2:
            break
        pairs.append((i, j))
        corr[i, :], corr[:, j] = -2.0, -2.0
    return pairs


def _correlation(x: list[float], y: list[float]) -> float:
    if len(x) < 2:
        return float("nan")
    return float(torch.corrcoef(torch.tensor([x, y], dtype=torch.float64))[0, 1])


def compare(
    runs: list[str | Path],
    out: Path,
    settings: CompareSettings,
    device: str = "cpu",
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    settings.validate()
    if len(runs) < 2:
        raise ConfigError("compare needs at least two runs")
    loaded = [load_run(run, device) for run in runs]
    task, core, _ = loaded[0]
    for run, (_, other, net) in zip(runs, loaded, strict=True):
        if other.config != core.config:
            raise ConfigError(
                f"{run} was trained in another world than {runs[0]}; compare mothers of one world"
            )
        check_hidden_site(net, settings.site)
    nets = [net for _, _, net in loaded]
    if len({net.hidden for net in nets}) > 1:
        raise ConfigError(
            f"the mothers' layers differ in width ({[net.hidden for net in nets]}); compare equals"
        )
    out.mkdir(parents=True, exist_ok=True)

    progress("the shared states (expert rollouts)")
    data = collect(core, load_policy("expert", core, task), settings.episodes, settings.seed)
    facts = {f: data.facts[f].cpu() for f, (kind, _) in FACTS.items() if kind == "regression"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        untrained = nets[0].blank().to(data.obs.device)
    acts = [activations(net, data.obs)[settings.site].cpu() for net in nets]
    floor_acts = activations(untrained, data.obs)[settings.site].cpu()

    progress("unit roles (each unit ablated alone)")
    care = assays.build_battery(core, settings.instances, settings.seed + 1, "kin")
    recognition = {
        m: assays.build_battery(core, settings.instances, settings.seed + 1, m, assays.RECOGNITIONS)
        for m in ("kin", "novel")
    }
    roles = []
    for net, act in zip(nets, acts, strict=True):
        drops = role_effects(net, settings.site, act.to(data.obs.device), care, recognition)
        roles.append({role: drops[role].tolist() for role in ROLES})

    pairs = []
    for i in range(len(nets)):
        for j in range(i + 1, len(nets)):
            progress(f"mothers {i} and {j}")
            matched = match_units(acts[i], acts[j])
            pairs.append(
                {
                    "runs": [i, j],
                    "cka": linear_cka(acts[i], acts[j]),
                    "cka_untrained": linear_cka(acts[i], floor_acts),
                    "probe_cosine": aligned_cosines(acts[i], acts[j], facts, settings.ridge),
                    "probe_cosine_untrained": aligned_cosines(acts[i], floor_acts, facts, settings.ridge),
                    "matched_units": len(matched),
                    "matched_care_drop_correlation": _correlation(
                        [roles[i]["care"][a] for a, _ in matched], [roles[j]["care"][b] for _, b in matched]
                    ),
                    "matched_recognition_drop_correlation": _correlation(
                        [roles[i]["recognition"][a] for a, _ in matched],
                        [roles[j]["recognition"][b] for _, b in matched],
                    ),
                }
            )
    report = {
        "runs": [str(run) for run in runs],
        "settings": dataclasses.asdict(settings),
        "states": int(data.obs.shape[0]),
        "roles": roles,
        "pairs": pairs,
    }
    write_json(out / "report.json", report)
    write_atomic(out / "report.md", format_compare(report))
    plot_cka(report, out / "cka.png")
    return report


def format_compare(report: dict[str, Any]) -> str:
    facts = list(report["pairs"][0]["probe_cosine"])
    lines = [
        f"# Is it the same drive? {len(report['runs'])} mothers at {report['settings']['site']}",
        "",
        f"Read on {report['states']} shared states (expert rollouts). Untrained: the first mother against "
        "a freshly initialised network of the same shape.",
        "",
        "| pair | CKA (untrained) | "
        + " | ".join(f"{f} cosine (untrained)" for f in facts)
        + " | matched units: care-drop corr. | recognition-drop corr. |",
        "|---" * (4 + len(facts)) + "|",
    ]
    for p in report["pairs"]:
        cosines = [f"{p['probe_cosine'][f]:.2f} ({p['probe_cosine_untrained'][f]:.2f})" for f in facts]
        lines.append(
            f"| {p['runs'][0]}-{p['runs'][1]} | {p['cka']:.2f} ({p['cka_untrained']:.2f}) | "
            + " | ".join(cosines)
            + f" | {p['matched_care_drop_correlation']:.2f}"
            + f" | {p['matched_recognition_drop_correlation']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def plot_cka(report: dict[str, Any], path: Path) -> Path:
    n = len(report["runs"])
    matrix = torch.eye(n, dtype=torch.float64)
    for p in report["pairs"]:
        i, j = p["runs"]
        matrix[i, j] = matrix[j, i] = p["cka"]
    fig, ax = plt.subplots(figsize=(1.2 * n + 2, 1.2 * n + 1.5))
    image = ax.imshow(matrix.numpy(), vmin=0, vmax=1, cmap="viridis")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{float(matrix[i, j]):.2f}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_title(f"linear CKA at {report['settings']['site']}", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return save_figure(fig, path)
