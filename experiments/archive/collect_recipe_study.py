"""Collect every discrete model and search a search workdir holds, superseded recipes included, into one file.

    .venv/bin/python experiments/archive/collect_recipe_study.py [--workdir runs/search/glue5_unweighted]
        [--out experiments/results/recipe_study_glue5.json]

Reads <workdir>/models/*/result.json, <workdir>/search_lambda_*/result.json and the same under every
<workdir>/superseded_*/ folder (each with a README.txt that says which recipe it used). Prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mgen_jax.io import write_json_atomic


def _collect(folder: Path, recipe: str) -> tuple[list[dict], list[dict]]:
    models, searches = [], []
    for path in sorted(folder.glob("models/*/result.json")):
        r = json.loads(path.read_text())
        settings = path.parent / "settings.json"
        models.append({"recipe": recipe, "branch_points": r["branch_points"], "scores": r["scores"],
                       "mean_score": r["mean_score"], "energy_ratio": r["energy_ratio"],
                       "finetune_steps": r.get("finetune_steps"),
                       "settings": json.loads(settings.read_text()) if settings.exists() else None})
    for path in sorted(folder.glob("search_lambda_*/result.json")):
        r = json.loads(path.read_text())
        searches.append({"recipe": recipe, "lambda": r["lambda"], "branch_points": r["branch_points"],
                         "expected_branch_points": r["expected_branch_points"], "steps": r["steps"],
                         "settings": r.get("settings")})
    return models, searches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/search/glue5_unweighted")
    parser.add_argument("--out", default="experiments/results/recipe_study_glue5.json")
    args = parser.parse_args()
    root = Path(args.workdir)
    models, searches = _collect(root, root.name)
    for old in sorted(root.glob("superseded_*")):
        note = old / "README.txt"
        m, s = _collect(old, old.name + (": " + " ".join(note.read_text().split()) if note.exists() else ""))
        models += m
        searches += s
    for m in models:
        print(f"{m['recipe'][:40]:40}  b={','.join(map(str, m['branch_points'])):16} mean {m['mean_score']:6.2f}  "
              f"energy ratio {m['energy_ratio']:.3f}")
    for s in searches:
        print(f"{s['recipe'][:40]:40}  lambda {s['lambda']:<4g} argmax b={s['branch_points']}  "
              f"E[b]={[round(x, 1) for x in s['expected_branch_points']]}")
    write_json_atomic(args.out, {"workdir": args.workdir, "models": models, "searches": searches})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
