"""Why the heads mean-pool: the quick SST-2 run (configs/finetune/quick.yaml) with [CLS] vs mean pooling.

    .venv/bin/python experiments/archive/pooling_check.py [--out experiments/results/pooling_check.json]

Runtime here: about 3 minutes (four 32-step runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from mgen_jax.io import write_json_atomic
from mgen_jax.train import load_config, train_and_evaluate

REPO = Path(__file__).parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/results/pooling_check.json")
    args = parser.parse_args()
    base = load_config(REPO / "configs/finetune/quick.yaml")
    rows = []
    for lr in (1e-4, 2e-4):
        for pooling in ("cls", "mean"):
            cfg = dataclasses.replace(base, pooling=pooling, learning_rate=lr)
            with tempfile.TemporaryDirectory() as workdir:
                summary = train_and_evaluate(cfg, workdir, progress=False)
            rows.append({"pooling": pooling, "learning_rate": lr, "dev_accuracy": summary["metrics"]["accuracy"],
                         "train_examples": summary["train_examples"], "dev_examples": summary["dev_examples"],
                         "steps": summary["steps"]})
            print(f"pooling {pooling:4}  lr {lr:g}: dev accuracy {summary['metrics']['accuracy']:.4f}")
    write_json_atomic(args.out, {"config": "configs/finetune/quick.yaml", "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
