"""Write the reference outputs of Hugging Face transformers' PyTorch BertModel for the equivalence test.

    .venv/bin/pip install torch==2.13.0 && .venv/bin/python experiments/bert/make_bert_reference.py

Encodes fixed inputs (single sentences, a sentence pair, a padded batch) with the all-MiniLM-L6-v2 tokenizer, runs
the PyTorch BertModel on the same model.safetensors, and saves input ids, masks, token types and last_hidden_state to
tests/fixtures/minilm_reference.npz (about 0.2 MB). tests/model/test_bert_equivalence.py compares our Flax encoder
with it (and, when torch is installed, with a live PyTorch run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mgen_jax.data import encode_pairs
from mgen_jax.pretrained import load_tokenizer, resolve_pretrained_dir

CASES = {
    "single": (["the movie was a charming and often affecting journey ."], None),
    "pair": (["A man with a hard hat is dancing."], ["A man wearing a hard hat is dancing."]),
    "padded_batch": (
        ["it 's a charming and often affecting journey .", "unflinchingly bleak and desperate",
         "The sailors rode the breeze clear of the rocks, and nobody on board doubted that they would make port."],
        None,
    ),
}


def pad(ids, types):
    length = max(len(x) for x in ids)
    out = np.zeros((3, len(ids), length), dtype=np.int64)
    for i, (a, t) in enumerate(zip(ids, types)):
        out[0, i, : len(a)] = a
        out[1, i, : len(a)] = 1
        out[2, i, : len(a)] = t
    return out


def torch_reference(directory: Path, batch: np.ndarray) -> np.ndarray:
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(str(directory)).eval()
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(batch[0]), attention_mask=torch.tensor(batch[1]), token_type_ids=torch.tensor(batch[2])
        )
    return out.last_hidden_state.numpy()


def build(name: str = "minilm-l6") -> dict[str, np.ndarray]:
    directory = resolve_pretrained_dir(name)
    tokenizer = load_tokenizer(directory)
    arrays = {}
    for case, (a, b) in CASES.items():
        batch = pad(*encode_pairs(tokenizer, a, b))
        arrays[f"{case}/inputs"] = batch
        arrays[f"{case}/texts_a"] = np.asarray(a)
        arrays[f"{case}/texts_b"] = np.asarray(b if b is not None else [])
        arrays[f"{case}/last_hidden_state"] = torch_reference(directory, batch)
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures/minilm_reference.npz")
    args = parser.parse_args()
    arrays = build()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
