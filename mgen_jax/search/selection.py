"""The phases that choose trees for energy budgets: the warm-up's loss profile, the task-weight calibration on the
held-out split, and the budget picks (their arithmetic: search/select.py).

- **Loss profile** (``warmup/loss_profile_heldout.json``, or ``loss_profile_<batches>.json`` without a held-out
  split): every task's loss (and, on the held-out split, main score) at every branch point under the warm-up's
  weights.
- **Task-weight calibration** (``task_weights_heldout.json``, with ``search_task_weights: heldout``): w_t from the
  held-out points task t loses under full sharing against its profile's rise.
- **Budget pick**: per energy budget, the tree of least estimated loss within it (no file: a pure function of the
  profile, the weights and the cost model).

Their fields (``SELECTION_FIELDS``) change no result a folder holds: the profile file is named by its batches.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.io import read_json_file, write_json_atomic
from mgen_jax.search.data import PROFILE_STREAM
from mgen_jax.search.rundir import PhaseFields
from mgen_jax.search.select import (
    all_branch_points, calibrate_task_weights, estimated_loss, score_drop_profile, select_within_budget,
    tree_energy_ratios,
)
from mgen_jax.search.steps import make_loss_profile, make_task_loss_profile, split_loss_profile
from mgen_jax.train.parallel import shard_batch, to_host

SELECTION_FIELDS = PhaseFields(("profile_batches", "task_weight_min_drop", "profile_metric"))


def loss_profile(gen, params, batches: int) -> dict[str, Any]:
    """Every task's train loss at every branch point under ``params`` (dropout off), mean and standard error over
    ``batches`` mixed batches of a stream no phase trains on: {"mean_loss", "stderr"}, each [U + 1][T]."""
    fn = gen.memo("loss_profile", lambda: make_loss_profile(gen.model, gen.tasks))
    rows = np.stack([
        to_host(fn(params, shard_batch(gen.data.mixed_batch(i, PROFILE_STREAM), gen.mesh, axis=1)))
        for i in range(batches)])  # [batches, U + 1, T]
    return {"mean_loss": rows.mean(0).tolist(), "stderr": (rows.std(0) / np.sqrt(batches)).tolist()}


def _profile_path(gen):
    return gen.run.loss_profile(heldout=gen.data.has_heldout, batches=gen.cfg.profile_batches)


def profile_ready(gen) -> bool:
    """The cached profile exists and holds what ``profile_metric`` needs."""
    path = _profile_path(gen)
    if not path.exists():
        return False
    return gen.cfg.profile_metric != "score" or "mean_score" in _read_profile(path)


def _read_profile(path) -> dict[str, Any]:
    profile = read_json_file(path, "loss profile")
    if not isinstance(profile.get("mean_loss"), list):
        raise ConfigError(f"loss profile {path} holds no 'mean_loss' list: not a profile this version wrote; delete "
                          "it to compute it again")
    return profile


def warmup_profile(gen, warm_params) -> dict[str, Any]:
    """The loss profile of the warm-up's weights (cached in the warm-up folder): over every row of the held-out split
    when the run has one, else over ``profile_batches`` mixed train batches of a stream no phase draws. Its record
    (the file): ``mean_loss`` [U + 1][T] (and ``mean_score`` on the held-out split), ``split``, ``batches``,
    ``tasks``, ``wall_clock_s``."""
    path = _profile_path(gen)
    if profile_ready(gen):
        return _read_profile(path)
    if warm_params is None:
        raise ConfigError(f"{path} is missing and the warm-up's weights were not loaded")
    start = time.perf_counter()
    if gen.data.has_heldout:
        _say(gen, f"loss profile of the warm-up's weights on the held-out split "
                  f"({sum(len(h) for h in gen.data.heldout)} rows)")
        fn = gen.memo("task_loss_profile", lambda: make_task_loss_profile(gen.model, gen.tasks))
        record = split_loss_profile(fn, gen.replicate(warm_params), gen.data, "heldout", batch_size=gen.eval_batch,
                                    put=gen.shard) | {"split": "heldout", "batches": None}
    else:
        _say(gen, f"loss profile of the warm-up's weights on {gen.cfg.profile_batches} batches")
        record = loss_profile(gen, warm_params, gen.cfg.profile_batches) | {
            "split": "train (a stream no phase draws)", "batches": gen.cfg.profile_batches}
    record |= {"tasks": [t.name for t in gen.tasks], "wall_clock_s": time.perf_counter() - start}
    write_json_atomic(path, record)
    return record


def _say(gen, line: str) -> None:
    if gen.progress:
        print(line, file=sys.stderr, flush=True)


def selection_profile(gen, warm_params) -> tuple[np.ndarray, dict[str, Any]]:
    """[U + 1, T]: what budget selection and the task-weight calibration rank trees by, each task's cost of branch
    point b, and how it was made. ``profile_metric: loss``: the warm-up's mean loss. ``score``: the warm-up's
    held-out main score, made non-increasing in b (isotonic regression: sharing more units is not assumed to help;
    the profile's rises are noise of 249-1,000 rows), as the drop from b = 0 in points; a task whose smoothed score
    does not drop at all is given a linear ramp in b instead (its calibration then spreads its measured
    full-sharing drop evenly over the units)."""
    profile = warmup_profile(gen, warm_params)
    if gen.cfg.profile_metric == "loss":
        return np.asarray(profile["mean_loss"], dtype=np.float64), {"metric": "loss"}
    drops, flat = score_drop_profile(np.asarray(profile["mean_score"], dtype=np.float64))
    return drops, {"metric": "score", "smoothing": "isotonic, non-increasing in b",
                   "linear_ramp_tasks": [gen.tasks[t].name for t in flat]}


def task_weights(gen) -> list[float]:
    """The search's task weights: the config's list, the held-out calibration (``calibrate``), or every task 1."""
    weights = gen.cfg.search_task_weights
    if weights == "heldout":
        path = gen.run.task_weights
        if not path.is_file():
            raise ConfigError("search_task_weights: heldout are calibrated in the sweep, after the full-sharing "
                              "model is fine-tuned (ModelGenerator.calibrate)")
        weights = read_json_file(path, "task weights").get("weights")
    return list(weights or [1.0] * len(gen.tasks))


def calibrate(gen, full_sharing: dict[str, Any], warm_params) -> dict[str, Any]:
    """``search_task_weights: heldout``: w_t = held-out points task t loses between the reference independent run
    and full sharing / its held-out loss rise in the warm-up's profile from b = 0 to b = U / T (search/select.py);
    written to the run's task_weights_heldout.json. Returns that record: ``weights``, ``tasks`` (each task's
    drop and rise), ``split``, ``min_drop``, ``profile``, ``independent_run``, ``note``."""
    cfg = gen.cfg
    independent = gen.independent_record()
    reference = None if independent is None else independent["seeds"][0]
    if reference is None or reference["folder"] != cfg.independent_dirs[0] or \
            "heldout_scores" not in reference or "heldout_scores" not in full_sharing:
        raise ConfigError("calibrating task weights on the held-out split needs the reference independent run's "
                          f"({cfg.independent_dirs[0] if cfg.independent_dirs else None}) and the "
                          "full-sharing model's held-out scores")
    profile, how = selection_profile(gen, warm_params)
    result = calibrate_task_weights(reference["heldout_scores"], full_sharing["heldout_scores"], profile.tolist(),
                                    [t.name for t in gen.tasks], cfg.task_weight_min_drop)
    record = result | {"split": "heldout", "min_drop": cfg.task_weight_min_drop, "profile": how,
                       "independent_run": reference["folder"],
                       "note": "held-out scores of the reference independent run (the first folder: choices never "
                               "wait for the other seeds) and of the full-sharing model; loss rise from the "
                               "warm-up's held-out loss profile"}
    write_json_atomic(gen.run.task_weights, record)
    return record


def tree_ratios(gen) -> tuple[np.ndarray, np.ndarray]:
    """Every tree (all_branch_points) and its cost-model energy ratio to the independent models."""
    def make():
        trees = all_branch_points(len(gen.tasks), gen.num_units)
        e = gen.energy
        return trees, tree_energy_ratios(trees, e.tables, e.workload, e.independent_j)

    return gen.memo("tree_ratios", make)


def pick_within_budget(gen, budget: float, warm_params) -> dict[str, Any]:
    """The tree of least estimated loss sum_t w_t (loss_t(b_t) - loss_t(0)) (w = ``task_weights``; losses from the
    warm-up's profile) whose cost-model energy ratio is <= budget (search/select.py): ``branch_points``,
    ``estimated_loss``, ``cost_model_energy_ratio`` and how the profile was made."""
    profile = warmup_profile(gen, warm_params)
    trees, ratios = tree_ratios(gen)
    weights = task_weights(gen)
    loss = estimated_loss(selection_profile(gen, warm_params)[0], weights, trees)
    return select_within_budget(trees, ratios, loss, budget) | {
        "task_weights": weights, "profile_batches": profile["batches"], "profile_split": profile.get(
            "split", "train (a stream no phase draws)"), "profile_metric": gen.cfg.profile_metric,
        "profile_wall_clock_s": profile["wall_clock_s"]}
