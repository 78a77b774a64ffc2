"""Where should the discrete models start? Dev scores of uniform-b models, before any fine-tuning, for three starting
points of a search config (default glue5):

- initial: trunk and embeddings pretrained, own units and heads from the independently fine-tuned models;
- warm-up: everything from the warm-up weights (finetune_init: warmup);
- independent: embeddings and trunk from the warm-up, own units and heads as fine-tuned alone (finetune_init:
  independent).

    .venv/bin/python experiments/archive/finetune_init_probe.py [--config configs/search/archive/glue5_steps200.yaml] \
        [--b 0,6,10,12]

Needs the sweep's warm-up (runs/search/<name>/warmup/params.msgpack). Runtime here: about 2 minutes per model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from mgen_jax.data.metrics import main_score
from mgen_jax.errors import ConfigError
from mgen_jax.io import write_json_atomic
from mgen_jax.search import ModelGenerator, load_search_config
from mgen_jax.search.steps import evaluate_discrete
from mgen_jax.train.checkpoint import restore_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/search/archive/glue5_steps200.yaml")
    parser.add_argument("--workdir", help="the sweep's workdir [runs/search/<config name>]")
    parser.add_argument("--b", default="0,6,10,12", help="uniform branch points to score")
    parser.add_argument("--out", help="[experiments/results/finetune_init_<config name>.json]")
    args = parser.parse_args()
    cfg = load_search_config(args.config)
    warm_path = Path(args.workdir or f"runs/search/{cfg.name}") / "warmup" / "params.msgpack"
    if not warm_path.is_file():
        raise ConfigError(f"{warm_path} not found: run the sweep's warm-up first (mgen sweep --config {args.config})")
    with tempfile.TemporaryDirectory() as scratch:  # the generator writes settings.json to its workdir
        gen = ModelGenerator(cfg, scratch, progress=False)
        initial = gen.initial_params()
        warm = restore_checkpoint(warm_path, initial)
        starts = {"initial": initial, "warm-up": warm,
                  "independent": dict(warm) | {"own": initial["own"], "heads": initial["heads"]}}
        rows = []
        for name, params in starts.items():
            for b in (int(x) for x in args.b.split(",")):
                metrics = evaluate_discrete(gen.predict, params, gen.data, [b] * len(gen.tasks))
                scores = {t.name: main_score(t, metrics[t.name]) for t in gen.tasks}
                rows.append({"start": name, "branch_points": [b] * len(gen.tasks), "scores": scores,
                             "mean_score": float(np.mean(list(scores.values())))})
                print(f"{name:12} b={b:2}: mean {rows[-1]['mean_score']:6.2f}  "
                      + "  ".join(f"{k} {v:5.1f}" for k, v in scores.items()), flush=True)
    out = args.out or f"experiments/results/finetune_init_{cfg.name}.json"
    write_json_atomic(out, {"config": args.config, "warmup": str(warm_path), "fine_tuning_steps": 0, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
