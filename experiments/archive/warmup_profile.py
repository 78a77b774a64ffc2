"""What the search's samples see: every task's train loss for every branch point b, under the weights the search
starts from (the warm-up's), for one or more run folders of one search config, and under the initial weights
(pretrained trunk, own units and heads as fine-tuned alone: b = 0 there is the independent models).

    .venv/bin/python experiments/archive/warmup_profile.py --config configs/search/archive/glue5_steps200.yaml \
        --workdir runs/search/glue5_steps200 [--workdir runs/search/<other>] [--batches 24] \
        [--out experiments/results/warmup_profile_glue5.json] [--plot-only]

Each workdir's own settings.json says how its warm-up was run (warmup_sampling). The batches come from a data stream
no phase trains on (mixed batches of the train splits, dropout off; ``search.selection.loss_profile``, which budget
selection uses on the warm-up's weights). Writes the JSON and a PNG beside it.
Runtime here: about 3 minutes per profile for 5 tasks and 24 batches.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mgen_jax.io import save_figure_atomic, write_json_atomic
from mgen_jax.search import ModelGenerator, load_search_config
from mgen_jax.search.selection import loss_profile
from mgen_jax.train.checkpoint import restore_checkpoint

def plot(record: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = record["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2))
    for t, (ax, task) in enumerate(zip(np.atleast_1d(axes), tasks)):
        for label, prof in record["profiles"].items():
            mean = np.asarray(prof["mean_loss"])[:, t]
            err = np.asarray(prof["stderr"])[:, t]
            b = np.arange(len(mean))
            ax.errorbar(b, mean, yerr=err, marker="o", ms=3, capsize=2, label=label)
        ax.set_title(task)
        ax.set_xlabel("branch point b (shared units)")
        ax.set_yscale("log")
    np.atleast_1d(axes)[0].set_ylabel("train loss (CE; squared error for STS-B)")
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", action="append", default=[])
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--glue-dir")
    parser.add_argument("--out")
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON")
    args = parser.parse_args()
    cfg = load_search_config(args.config)
    out = Path(args.out or f"experiments/results/warmup_profile_{cfg.name}.json")
    if args.plot_only:
        plot(json.loads(out.read_text()), out.with_suffix(".png"))
        return
    if not args.workdir:
        parser.error("give at least one --workdir")
    record = {"config": args.config, "tasks": list(cfg.tasks), "batches": args.batches,
              "per_task_batch": cfg.per_task_batch, "profiles": {}}
    for workdir in args.workdir:
        settings = Path(workdir) / "settings.json"
        if not settings.is_file():
            raise SystemExit(f"{settings} not found: {workdir} is not a search workdir of {args.config}")
        saved = json.loads(settings.read_text())
        sampling = saved.get("warmup_sampling", "soft")
        gen = ModelGenerator(load_search_config(args.config, warmup_sampling=sampling), workdir,
                             glue_dir=args.glue_dir, progress=False)
        initial = gen.initial_params()
        if "initial weights" not in record["profiles"]:
            start = time.perf_counter()
            record["profiles"]["initial weights"] = loss_profile(gen, initial, args.batches)
            print(f"initial weights: {time.perf_counter() - start:.0f} s", flush=True)
        path = Path(workdir) / "warmup" / "params.msgpack"
        if not path.is_file():
            raise SystemExit(f"{path} not found: run the warm-up of {workdir} first")
        start = time.perf_counter()
        label = f"after {saved['warmup_steps']}-step warm-up, {sampling} sampling"
        record["profiles"][label] = loss_profile(gen, restore_checkpoint(path, initial), args.batches)
        print(f"{label}: {time.perf_counter() - start:.0f} s", flush=True)
    for label, prof in record["profiles"].items():
        print(label)
        for b, row in enumerate(prof["mean_loss"]):
            print(f"  b={b:2d} " + " ".join(f"{t}={v:.3f}" for t, v in zip(record["tasks"], row)))
    write_json_atomic(out, record)
    plot(record, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
