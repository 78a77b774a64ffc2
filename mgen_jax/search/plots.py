"""Plots of search records (matplotlib, written atomically): the front of pre-registered budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mgen_jax.io import save_figure_atomic


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
