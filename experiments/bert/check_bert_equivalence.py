"""Record how far our Flax encoder is from the PyTorch reference fixture (tests/fixtures/minilm_reference.npz).

    .venv/bin/python experiments/bert/check_bert_equivalence.py [--out experiments/results/bert_equivalence.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mgen_jax.io import write_json_atomic
from mgen_jax.model import load_pretrained

FIXTURE = Path(__file__).parents[2] / "tests" / "fixtures" / "minilm_reference.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/results/bert_equivalence.json")
    args = parser.parse_args()
    model = load_pretrained("minilm-l6")
    reference = np.load(FIXTURE)
    record = {}
    for case in ("single", "pair", "padded_batch"):
        inputs, expected = reference[f"{case}/inputs"], reference[f"{case}/last_hidden_state"]
        diff = np.abs(np.asarray(model(inputs[0], inputs[1], inputs[2])) - expected)
        real = inputs[1].astype(bool)
        record[case] = {"shape": list(expected.shape), "max_abs_diff_all_positions": float(diff.max()),
                        "max_abs_diff_real_tokens": float(diff[real].max())}
        print(f"{case:13} max |ours - PyTorch| = {diff.max():.2e} (real tokens {diff[real].max():.2e})")
    write_json_atomic(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
