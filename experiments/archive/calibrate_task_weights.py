"""Task weights for the search's logits (``search_task_weights``): dev-score points per unit of train loss.

Recipe study only: this script calibrates on dev scores (how the 200-step glue5 sweeps were run). The equal-budget
sweep calibrates on the held-out split itself (``search_task_weights: heldout``, search.selection.calibrate).

    .venv/bin/python experiments/archive/calibrate_task_weights.py --workdir runs/search/glue5_steps200 \
        [--profile experiments/results/warmup_profile_glue5.json] \
        [--profile-key "after 120-step warm-up, hard sampling"] [--out experiments/results/task_weights_glue5.json]

The search ranks branch points by train loss, but tasks' losses are on different scales (STS-B's squared error
against cross-entropies) and buy different amounts of score: in glue5, full sharing cost CoLA 31 MCC points for a
0.3-nat rise of its loss and STS-B 3 points for a 2-unit rise. The weight of task t is

    w_t = (score_t(b = 0) - score_t(b = U)) / (loss_t(U) - loss_t(0)) / T

from the two fine-tuned endpoint models of the workdir (models/b_0-...-0 and models/b_U-...-U, dev scores x 100) and
the warm-up's loss profile (``experiments/archive/warmup_profile.py``: mean train loss at every b on held-out
batches). Then sum_t w_t (loss_t(b_t) - loss_t(0)) is a linear estimate of the mean dev-score drop, and lambda is in
mean-score points per unit of energy ratio. The endpoints' scores are dev scores: the weights are tuned on the split
the tables report (5 numbers from 2 baseline models), which the output says. A task whose score did not drop gets the
floor ``--min-drop`` points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mgen_jax.errors import ConfigError
from mgen_jax.io import write_json_atomic
from mgen_jax.search.select import calibrate_task_weights


def calibrate(zero: dict, full: dict, losses: list[list[float]], tasks: list[str], min_drop: float) -> dict:
    """Weights from the endpoint records (result.json of b = 0 and b = U) and the loss profile [U + 1][T]."""
    return calibrate_task_weights(zero["scores"], full["scores"], losses, tasks, min_drop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="sweep workdir with the fine-tuned b = 0 and b = U models")
    parser.add_argument("--profile", default="experiments/results/warmup_profile_glue5.json")
    parser.add_argument("--profile-key", default="after 120-step warm-up, hard sampling")
    parser.add_argument("--min-drop", type=float, default=0.5, help="floor of a task's score drop, points [0.5]")
    parser.add_argument("--out", default="experiments/results/task_weights_glue5.json")
    args = parser.parse_args()

    profile_path = Path(args.profile)
    if not profile_path.is_file():
        raise SystemExit(f"error: {profile_path} not found: run experiments/archive/warmup_profile.py first")
    profile = json.loads(profile_path.read_text())
    if args.profile_key not in profile["profiles"]:
        raise SystemExit(f"error: {profile_path} has no profile {args.profile_key!r}; it has "
                         f"{sorted(profile['profiles'])}")
    losses = profile["profiles"][args.profile_key]["mean_loss"]
    tasks = profile["tasks"]
    units = len(losses) - 1
    ends = {}
    for b in (0, units):
        path = Path(args.workdir) / "models" / ("b_" + "-".join([str(b)] * len(tasks))) / "result.json"
        if not path.is_file():
            raise SystemExit(f"error: {path} not found: fine-tune the b = {b} model first (mgen sweep with "
                             f"uniform_branch_points including {b}, or full sharing)")
        ends[b] = json.loads(path.read_text())
    try:
        result = calibrate(ends[0], ends[units], losses, tasks, args.min_drop)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    for row in result["tasks"]:
        print(f"{row['task']:6} score {row['score_b0']:6.2f} -> {row['score_bU']:6.2f} (drop {row['score_drop']:5.2f}); "
              f"loss {row['loss_b0']:.3f} -> {row['loss_bU']:.3f}; weight {row['weight']:.3f} points per unit")
    print("search_task_weights: [" + ", ".join(f"{w:.3g}" for w in result["weights"]) + "]")
    write_json_atomic(Path(args.out), {
        "workdir": args.workdir, "profile": args.profile, "profile_key": args.profile_key, "min_drop": args.min_drop,
        "note": "dev scores of the two fine-tuned endpoint models: the weights are tuned on the reported split",
        **result})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
