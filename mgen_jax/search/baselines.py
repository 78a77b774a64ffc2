"""Which discrete models a sweep trains beside its lambda searches: the baseline trees (full sharing, uniform branch
points, the CKA heuristic, trees given in the config), the budget picks (one model per distinct tree), and a uniform
baseline at the energy of every pick.

``SWEEP_FIELDS``: the config fields that only the sweep reads (which models, and how it judges them): a run folder is
kept whatever their values, since every model keeps its own folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.io import read_json_file
from mgen_jax.search.points import SweepPoint
from mgen_jax.search.rundir import PhaseFields
from mgen_jax.search.selection import pick_within_budget, tree_ratios
from mgen_jax.search.wording import budget_obtained

SWEEP_FIELDS = PhaseFields(("name", "lambdas", "uniform_branch_points", "heuristic_thresholds", "redundancy_file",
                            "energy_budgets", "budgets_at_baselines", "uniform_at_budgets", "claim_seeds", "trees",
                            "full_sharing", "claim_margin", "goal_efficiency", "goal_max_drop_points"))

ModelFn = Callable[..., Optional[dict]]  # (branch points, label, seed=None) -> the model's record, None if pending


class Tree(NamedTuple):
    """A baseline tree: its kind, label, branch points and why it was chosen (None: its label says it)."""

    kind: str
    label: str
    branch_points: list[int]
    why: str | None = None


def heuristic_branch_points(redundancy: dict[str, Any], tasks: Sequence[str], threshold: float) -> list[int]:
    """b_t = the number of leading units whose linear CKA to the pretrained model is >= threshold for task t."""
    out = []
    for task in tasks:
        if task not in redundancy["cka_to_pretrained"]:
            raise ConfigError(f"redundancy record has no entry for {task}; run mgen analyze on these tasks")
        b = 0
        for similarity in redundancy["cka_to_pretrained"][task]:
            if similarity < threshold:
                break
            b += 1
        out.append(b)
    return out


def baseline_trees(cfg, tasks: Sequence[str], units: int) -> list[Tree]:
    """The config's baselines, in training order: full sharing (b = U), uniform b, the CKA heuristic's trees (from
    ``redundancy_file``), the given ``trees``."""
    t = len(tasks)
    trees = [Tree("full sharing", "full sharing (b = U)", [units] * t)] if cfg.full_sharing else []
    trees += [Tree("uniform", f"uniform b={b}", [b] * t) for b in cfg.uniform_branch_points]
    if cfg.redundancy_file and cfg.heuristic_thresholds:
        path = Path(cfg.redundancy_file)
        if not path.is_file():
            raise ConfigError(f"redundancy file {path} not found: run mgen analyze first, or set redundancy_file: null")
        redundancy = read_json_file(path, "redundancy file")
        trees += [Tree("heuristic", f"heuristic CKA>={th:g}", heuristic_branch_points(redundancy, tasks, th))
                  for th in cfg.heuristic_thresholds]
    return trees + [Tree("given", tree["label"], list(tree["branch_points"]), tree.get("source"))
                    for tree in cfg.trees]


def _budgets(cfg, baselines: Sequence[SweepPoint]) -> dict[float, str]:
    """Every budget and where it comes from: energy_budgets and, with budgets_at_baselines, every baseline's energy
    ratio strictly between full sharing's and 1."""
    budgets = {float(x): "energy_budgets" for x in cfg.energy_budgets}
    if cfg.budgets_at_baselines:
        least = min(p.energy_ratio for p in baselines) if baselines else 0.0
        for p in baselines:
            if least < p.energy_ratio < 1.0:
                budgets.setdefault(p.energy_ratio, f"energy of {p.label}")
    return budgets


def budget_points(gen, warm, baselines: Sequence[SweepPoint], recipe: str, model: ModelFn
                  ) -> tuple[list[SweepPoint], list[dict[str, Any]]]:
    """One fine-tuned model per distinct tree that budget selection picks (selection.pick_within_budget), largest
    budget first: a smaller budget that picks the same tree is listed in that model's ``budgets``. Returns the
    finished models' points and, for the trees still to train (report_only), their label and cost-model energy
    ratio (what the uniform baselines are matched to)."""
    budgets = _budgets(gen.cfg, baselines)
    picks: dict[tuple[int, ...], tuple[float, dict[str, Any], list[dict[str, Any]]]] = {}
    for budget in sorted(budgets, reverse=True):
        sel = pick_within_budget(gen, budget, warm)
        key = tuple(sel["branch_points"])
        if key not in picks:
            picks[key] = (budget, sel, [])
        picks[key][2].append({"budget": budget, "source": budgets[budget]})
    points, waiting = [], []
    for budget, sel, listed in picks.values():
        label = f"budget {budget:.4f}"
        record = model(sel["branch_points"], label)
        if record is None:
            waiting.append({"label": label, "energy_ratio": sel["cost_model_energy_ratio"]})
            continue
        details = {"budget": budget, "budgets": listed, "estimated_loss": sel["estimated_loss"],
                   "cost_model_energy_ratio": sel["cost_model_energy_ratio"]}
        obtained = budget_obtained(gen.cfg, budget, budgets[budget], sel, recipe)
        points.append(SweepPoint("search", label, record, obtained, method="budget", details=details))
    return points, waiting


def uniform_at_budgets(gen, picks: Sequence[tuple[str, float]], taken: set) -> list[Tree]:
    """The uniform-b tree nearest in cost-model energy ratio to every budget pick (``picks``: its label and energy
    ratio; ties to the lower energy), those not already ``taken`` (which it extends)."""
    trees, ratios = tree_ratios(gen)
    uniform = np.flatnonzero(np.all(trees == trees[:, :1], axis=1))
    out = []
    for label, ratio in picks:
        gaps = np.abs(ratios[uniform] - ratio)
        best = uniform[np.lexsort((ratios[uniform], gaps))[0]]
        b = [int(x) for x in trees[best]]
        if tuple(b) not in taken:
            taken.add(tuple(b))
            out.append(Tree("uniform", f"uniform b={b[0]}", b, f"nearest uniform energy to {label}"))
    return out
