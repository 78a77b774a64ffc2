"""Plots of search records (matplotlib, written atomically): a sweep's points (``plot_pareto``), the front of
pre-registered budgets (``plot_front``) and the gradient search against enumeration on it (``plot_head_to_head``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mgen_jax.io import save_figure_atomic

SWEEP_STYLES = {"search": ("o", "tab:red"), "gradient": ("P", "tab:red"), "budget": ("D", "tab:orange"), "full sharing": ("X", "black"),
                "uniform": ("s", "tab:blue"), "heuristic": ("^", "tab:green"), "given": ("v", "tab:brown"),
                "independent": ("*", "tab:purple")}


def _style(p) -> str:
    """A sweep point's style: its kind, or "budget" / "gradient" for a budget pick / a gradient run."""
    return p.method if p.method in ("budget", "gradient") else p.kind


def _tag(p, style: str) -> str:
    """A sweep point's label on the plot."""
    if style == "search":
        return f"λ={p.details.get('lambda', 0):g}"
    if style == "budget":
        return f"≤{p.details.get('budget', 0):.2f}"
    if style == "gradient":
        return f"r≤{p.details.get('energy_target', 0):g}"
    if style == "given":
        return "b=" + ",".join(str(b) for b in p.branch_points)
    return {"full sharing": "b=U", "independent": ""}.get(style, p.label.split()[-1])


def plot_pareto(points: Sequence[Any], path: str | Path, *, title: str, goal, reference_mean_score: float | None,
                claim: dict[str, Any] | None) -> Path:
    """Energy ratio (x) against mean dev score (y) of a sweep's points (points.SweepPoint: one series per kind,
    budget picks apart from lambda searches), the claim's model as its seeds' mean ± std, and ``goal``
    (judge.Goal) as dotted lines: its efficiency, and its drop below ``reference_mean_score``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8))
    for style, (marker, color) in SWEEP_STYLES.items():
        pts = sorted((p for p in points if _style(p) == style), key=lambda p: p.energy_ratio)
        if not pts:
            continue
        label = {"search": "search (lambda)", "budget": "search (energy budget)",
                 "gradient": "gradient search (energy target)"}.get(style, style)
        ax.plot([p.energy_ratio for p in pts], [p.mean_score for p in pts], marker=marker, color=color,
                linestyle="-" if style in ("search", "budget", "gradient", "uniform") else "none",
                markersize=9 if style == "independent" else 7, label=label, alpha=0.9)
        offset = (4, -10) if style == "budget" else (4, 4)  # budget tags below, lambda tags above the line
        for p in pts:
            ax.annotate(_tag(p, style), (p.energy_ratio, p.mean_score), textcoords="offset points", xytext=offset,
                        fontsize=7)
    _claim_and_goal(ax, claim or {}, goal, reference_mean_score)
    ax.set_xlabel("energy per request / independent models (exact simulator, real dev lengths)")
    ax.set_ylabel("mean dev score (main metric x 100)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return Path(path)


def _claim_and_goal(ax, claim: dict[str, Any], goal, reference_mean_score: float | None) -> None:
    if claim.get("dev_mean_score") is not None:
        ax.errorbar([claim["energy_ratio"]], [claim["dev_mean_score"]], yerr=[claim["dev_mean_score_std"] or 0.0],
                    marker="P", color="tab:red", markersize=10, capsize=3, linestyle="none",
                    label=f"headline model (chosen on held-out), mean of {len(claim['seeds'])} seeds ± std")
    ratio = 1 / goal.efficiency  # the goal: at least this efficiency (left of the vertical line) ...
    ax.axvline(ratio, color="grey", linestyle=":", linewidth=1)
    ax.text(ratio, 0.01, f" {goal.efficiency:g}x", color="grey", fontsize=8, va="bottom",
            transform=ax.get_xaxis_transform())
    if reference_mean_score is not None:  # ... within this drop (above the horizontal one)
        drop = goal.max_drop_points
        ax.axhline(reference_mean_score - drop, color="grey", linestyle=":", linewidth=1)
        ax.text(ax.get_xlim()[1], reference_mean_score - drop, f"{drop:g} point{'' if drop == 1 else 's'} below "
                "independent ", color="grey", fontsize=8, va="top", ha="right")


def _tree(p: dict[str, Any]) -> str:
    trees = {tuple(b) for b in p.get("branch_points_by_seed", [])}
    if len(trees) == 1:
        return "b=" + ",".join(map(str, next(iter(trees))))
    return f"{len(trees)} trees over seeds" if trees else ""


def plot_front(record: dict[str, Any], path: str | Path) -> Path:
    """Efficiency (x) against mean dev score (y): every budget's representative with error bars (std over seeds),
    the other candidates of head-to-head budgets hollow, the baselines (one seed) as squares, the independent
    models as a band (mean +- std over seeds) and the goal's efficiency and drop as dotted lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    ind = record["independent"]
    mean, std = ind["dev_mean_score"], ind.get("dev_mean_score_std") or 0.0
    ax.axhspan(mean - std, mean + std, color="tab:purple", alpha=0.15,
               label=f"independent models, {len(ind['seeds'])} seeds (mean ± std)")
    ax.axhline(mean, color="tab:purple", linewidth=1)
    goal = record.get("headline", {}).get("goal", {})
    if goal:
        ax.axhline(mean - goal["max_drop_points"], color="grey", linestyle=":", linewidth=1)
        ax.axvline(goal["efficiency"], color="grey", linestyle=":", linewidth=1)
        ax.text(goal["efficiency"], 0.01, f" {goal['efficiency']:g}x", color="grey", fontsize=8,
                transform=ax.get_xaxis_transform())
    reps, others = [], []
    for point in record["points"]:
        for label, run in point["runs"].items():
            (reps if label == point.get("chosen") else others).append(run)
    for runs, style, name in ((reps, dict(marker="o", color="tab:red"), "front: the held-out choice per budget"),
                              (others, dict(marker="o", mfc="none", color="tab:orange"), "other candidates")):
        for i, p in enumerate(runs):
            ax.errorbar([p["efficiency"]], [p["dev_mean_score"]], yerr=[p.get("dev_mean_score_std") or 0.0],
                        capsize=3, linestyle="none", markersize=7, label=name if i == 0 else None, **style)
            seeds = len(p["seeds"])
            ax.annotate(f"{p['label']}\n{_tree(p)}" + ("" if p.get("complete") else f" ({seeds} seed(s))"),
                        (p["efficiency"], p["dev_mean_score"]), textcoords="offset points", xytext=(5, 4), fontsize=6)
    for i, p in enumerate(record.get("baselines", [])):
        ax.plot([p["efficiency"]], [p["dev_mean_score"]], marker="s", color="tab:blue", linestyle="none",
                label="baselines (1 seed)" if i == 0 else None)
        ax.annotate(p["label"], (p["efficiency"], p["dev_mean_score"]), textcoords="offset points", xytext=(5, -9),
                    fontsize=6)
    ax.set_xlabel("energy efficiency over independent models (exact simulator, real dev lengths)")
    ax.set_ylabel("mean dev score (main metric x 100)")
    title = f"{record['name']}: {', '.join(record['tasks'])}, every model at the independent training budget"
    if not record.get("complete"):
        title += f"\npartial: {len(record['pending'])} run(s) still to train"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_head_to_head(record: dict[str, Any], path: str | Path) -> Path:
    """The gradient search against enumeration (search/head_to_head.py): one panel per split (held-out, dev), the
    budgets on x, each method's seeds as dots and their mean with error bars (std over seeds), labelled with the
    efficiency and the tree(s); the independent models as a band (mean +- std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), sharey=False)
    ind = record["independent"]
    styles = {"gradient": dict(marker="P", color="tab:red"), "tree": dict(marker="D", color="tab:blue")}
    names = {"gradient": "gradient search", "tree": "enumeration tree"}
    for ax, split, title in ((axes[0], "heldout", "held-out split of train (chooses)"),
                             (axes[1], "dev", "dev (reported once per final model)")):
        mean, std = ind.get(f"{split}_mean_score"), ind.get(f"{split}_mean_score_std") or 0.0
        if mean is not None:
            ax.axhspan(mean - std, mean + std, color="tab:purple", alpha=0.15,
                       label=f"independent models, {len(ind['seeds'])} seeds (mean ± std)")
            ax.axhline(mean, color="tab:purple", linewidth=1)
        shown = set()
        for x, budget in enumerate(record["budgets"]):
            for dx, label in ((-0.15, budget["gradient"]), (0.15, budget["enumeration"])):
                m = budget["methods"].get(label)
                if m is None:
                    continue
                by_seed = [v for v in m[f"{split}_mean_score_by_seed"] if v is not None]
                if not by_seed:
                    continue
                style = styles[m["kind"]]
                ax.plot([x + dx] * len(by_seed), by_seed, linestyle="none", marker=".", color=style["color"],
                        alpha=0.5)
                sd = float(np.std(by_seed, ddof=1)) if len(by_seed) > 1 else 0.0
                ax.errorbar([x + dx], [float(np.mean(by_seed))], yerr=[sd], capsize=3, linestyle="none", markersize=8,
                            label=None if m["kind"] in shown else names[m["kind"]], **style)
                shown.add(m["kind"])
                tree = _tree(m)
                ratios = m["energy_ratio_by_seed"]
                low, high = m["efficiency_by_seed"][ratios.index(max(ratios))], m["efficiency_by_seed"][
                    ratios.index(min(ratios))]
                eff = low if low == high else f"{low}-{high}"
                seeds = "" if m["complete"] else f", {len(by_seed)} seed(s)"
                ax.annotate(f"{eff}\n{tree}{seeds}", (x + dx, float(np.mean(by_seed))), textcoords="offset points",
                            xytext=(6, -4), fontsize=6)
        ax.set_xticks(range(len(record["budgets"])))
        ax.set_xticklabels([f"r ≤ {b['energy_budget']:g}" for b in record["budgets"]])
        ax.set_xlim(-0.6, len(record["budgets"]) - 0.4)
        ax.set_ylabel("mean score (main metric x 100)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7)
    head = f"{record['front']}: gradient search vs enumeration, {len(record['seeds'])} seeds per method and budget"
    if not record.get("complete"):
        head += f"\npartial: {len(record['pending'])} run(s) still to train"
    fig.suptitle(head, fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return Path(path)
