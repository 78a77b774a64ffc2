"""``mgen demo``: the README's first command. A small live run of the model generator on the user's machine (the
gradient search at one energy target beside no sharing and full sharing, configs/search/demo.yaml), then what
sharing does at full scale: the committed five-task front (experiments/results/front_glue5.json, rebuilt by
``mgen front --report-only`` from the committed run records), each table followed by how to read it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mgen_jax.cli.flags import DEFAULT_OUT, or_default, overrides, pick
from mgen_jax.cli.output import print_json, wrote
from mgen_jax.errors import ConfigError

DEMO_CONFIG = "configs/search/demo.yaml"
FRONT_RECORD = "experiments/results/front_glue5.json"


def add_commands(sub, flags) -> None:
    p = sub.add_parser("demo", parents=pick(flags, ("--workdir", "--set", "--glue-dir", "--no-progress", "--out",
                                                    "--json")),
                       help=f"a small live gradient search ({DEMO_CONFIG}), then the committed glue5 front")
    p.set_defaults(func=cmd_demo)


def _repository_file(path: str) -> Path:
    if not Path(path).is_file():
        raise ConfigError(f"mgen demo reads {path}: run it from the repository's root folder")
    return Path(path)


def cmd_demo(args: argparse.Namespace) -> None:
    from mgen_jax.cli.search import front_table
    from mgen_jax.search import ModelGenerator, load_search_config
    from mgen_jax.search.sweep import run_sweep
    from mgen_jax.search.sweep_record import summary_table

    cfg = load_search_config(_repository_file(DEMO_CONFIG), set_values=overrides(args.set))
    front = json.loads(_repository_file(FRONT_RECORD).read_text(encoding="utf-8"))
    gen = ModelGenerator(cfg, Path(args.workdir or f"runs/search/{cfg.name}"), glue_dir=args.glue_dir,
                         progress=not args.no_progress)
    out = or_default(args.out, DEFAULT_OUT)
    record = run_sweep(gen, out, report_only=False)
    floors = majority_scores(gen)
    if args.json:
        print_json({"live": record, "majority_scores": floors, "front": front})
    else:
        print(f"1. A live run on this machine ({DEMO_CONFIG}: {', '.join(record['tasks'])})\n")
        print(summary_table(record))
        print("\n" + live_reading(record, floors) + "\n")
        print(f"2. What sharing does at full scale: the committed five-task front ({FRONT_RECORD})\n")
        print(front_table(front))
        print("\n" + front_reading(front))
    wrote(f"{out}/search_{record['name']}.json", f"{out}/search_{record['name']}.png")


def majority_scores(gen) -> dict[str, float]:
    """Every classification task's dev score (main metric x 100, the same dev rows as the table) when every row gets
    the most common label of its training rows: the floor a model that learned nothing reaches."""
    import numpy as np

    from mgen_jax.data.metrics import main_score, prediction_metrics

    floors = {}
    for task, train, dev in zip(gen.tasks, gen.data.train, gen.data.dev):
        if not task.is_regression:
            values, counts = np.unique(np.asarray(train.labels), return_counts=True)
            guess = np.full(len(dev.labels), values[np.argmax(counts)])
            floors[task.name] = main_score(task, prediction_metrics(task, guess, np.asarray(dev.labels)))
    return floors


def live_reading(record: dict, floors: dict[str, float]) -> str:
    """How to read the live run's table, from its own record; ``floors``: the majority-class scores."""
    points = {p["label"]: p for p in record["points"]}
    searched = [p for p in record["points"] if p.get("method") == "gradient"]
    seen = next(iter(record["points"]))["examples_seen"]
    lines = [
        "How to read it: every row is one multi-task model trained from the pretrained encoder on the same examples "
        f"per task ({', '.join(f'{t} {n:,}' for t, n in seen.items())}); 'branch points' b says how many of the "
        "encoder's units (attention and feed-forward blocks, 2 per layer) each task shares with the others before "
        "its own copies begin (0: its own model; all: full sharing). Task scores are dev metrics x 100, evaluated "
        "once; 'energy ratio' is the energy per request on the simulated ReRAM chip (exact simulator, the tasks' "
        "real dev lengths) over that of one independent model per task, 'efficiency' its inverse, 'crossbars' the "
        "chip area the model's weights occupy.",
    ]
    for p in searched:
        repaired = " (repaired to meet it)" if p["search"]["repaired"] else ""
        lines.append(
            f"The gradient search (energy target {p['energy_target']:g}) trained the weights and the branch-point "
            f"logits together for {p['search']['steps']} of {p['finetune_steps']} steps, then chose b = "
            f"{','.join(map(str, p['branch_points']))}{repaired}: {p['energy_ratio']:.3f} of the independent "
            f"models' energy and {p['crossbars']:,} crossbars.")
    if floors:
        lines.append("Always answering the majority label of train scores " + ", ".join(
            f"{t} {x:.1f}" for t, x in floors.items()) + " on the same dev rows: a score near that floor means the "
            "task has not been learned at this budget.")
    if "uniform b=0" in points:
        lines.append("At this scale (minutes of training on two tasks) scores move by points from seed to seed: "
                     "the run shows the pipeline working end to end, not what sharing costs. The front below does.")
    return "\n".join(lines)


def front_reading(front: dict) -> str:
    """How to read the committed front's table."""
    lines = [
        "How to read it: each budget's model (trees chosen on a held-out split of train, by budget selection or "
        "the gradient search) is trained on exactly the examples its tasks' independent models saw; 'dev mean ± "
        "std' is over seeds, 'drop' is the independent models' mean minus ours with a 90% paired-bootstrap "
        "interval (positive: we lose points).",
        front["headline"]["sentence"],
    ]
    if front.get("pending"):
        lines.append(f"Still training for this record: {len(front['pending'])} run(s) (docs/results.md says which).")
    return "\n".join(lines)
