"""``mgen compress``: task models in, a compressed-model folder (files.py) and its report out.

1. load the task models (a fine-tuning run folder, a folder of them, or a multi-task model folder: models.py);
2. profile every task over every base kind on its held-out split and choose the base kinds (profiler.py);
3. write ``deltas.msgpack`` and check that it loads back to exactly the classifiers the profiler evaluated;
4. the hardware summary: the exact simulator on the tasks' real dev lengths, without and with the compression
   (crossbars, area, energy per request, latency estimate);
5. optionally (``evaluate_dev``) the dev scores of the uncompressed and compressed models, evaluated once and only
   reported: nothing is chosen on them.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mgen_jax.compress.files import DELTAS_FILE, REPORT_FILE, load_compressed, pack_task, save_deltas
from mgen_jax.compress.models import ModelSet, encoded_split, load_models
from mgen_jax.compress.profiler import ProfileSettings, compress_models
from mgen_jax.errors import ConfigError
from mgen_jax.hw.arch import BertArch, load_arch
from mgen_jax.hw.delta import DeltaPlan, model_fields
from mgen_jax.hw.spec import HardwareSpec
from mgen_jax.io import prepare_output, write_json_atomic
from mgen_jax.pretrained import resolve_pretrained_dir


def hardware_summary(spec: HardwareSpec, arch: BertArch, plan: DeltaPlan, names: Sequence[str],
                     labels: Sequence[int], trace) -> dict[str, Any]:
    """Simulator summaries of the model without and with ``plan`` on ``trace``, and their ratios."""
    from mgen_jax.hw.tree import SharingTree
    from mgen_jax.sim.simulate import simulate

    tree = SharingTree.from_branch_points(list(plan.branch_points), arch.num_units)
    plain = simulate(spec, arch, tree, trace, num_labels=labels)
    packed = simulate(spec, arch, tree, trace, num_labels=labels, compression=plan)
    keep = ("energy_per_request_j", "breakdown_per_request_j", "crossbars", "tiles", "area_mm2", "fits_on_chip",
            "latency_per_request_s", "chip_crossbars")
    out = {"uncompressed": {k: plain.summary()[k] for k in keep},
           "compressed": {k: packed.summary()[k] for k in keep + ("delta_crossbars", "base_crossbars",
                                                                  "compressed_nodes")}}
    out["area_ratio"] = out["compressed"]["crossbars"] / out["uncompressed"]["crossbars"]
    out["energy_ratio"] = out["compressed"]["energy_per_request_j"] / out["uncompressed"]["energy_per_request_j"]
    out["workload"] = trace.description
    out["tasks"] = list(names)
    return out


def _record(record: dict) -> dict:
    """A profiler record without its arrays (choices summarised per matrix)."""
    out = {k: v for k, v in record.items() if k not in ("choices", "means")}
    if record.get("choices") is not None:
        out["matrices"] = {key: {"delta_bits": c.bits, "kept_blocks": len(c.kept), "crossbars": c.crossbars}
                           for key, c in record["choices"].items()}
    return out


def dev_scores(models: ModelSet, result: dict, glue_dir=None) -> dict[str, dict[str, float]]:
    """{"uncompressed": {task: score}, "compressed": {task: score}} on dev (evaluated once, reported only)."""
    evaluator, tokenizer = result["evaluator"], result["tokenizer"]
    out: dict[str, dict[str, float]] = {"uncompressed": {}, "compressed": {}}
    for model in models.models:
        dev = encoded_split(models, model.task, "dev", tokenizer, glue_dir)
        out["uncompressed"][model.task.name] = evaluator.score(model.task, model.params, dev)[0]
        out["compressed"][model.task.name] = evaluator.score(model.task, result["params"][model.task.name], dev)[0]
    return out


def compress_folder(source: str | Path, out: str | Path, spec: HardwareSpec, arch: BertArch,
                    settings: ProfileSettings, *, tasks: Sequence[str] | None = None, glue_dir=None,
                    evaluate_dev: bool = False, trace=None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Compress the task models at ``source`` into the folder ``out``; returns the report (also ``out/report.json``).

    ``trace``: the workload of the hardware summary (default: the tasks' real dev lengths)."""
    start = time.perf_counter()
    out = prepare_output(Path(out) / REPORT_FILE, "compressed-model folder").parent
    models = load_models(source, tasks)
    runs_arch = load_arch(resolve_pretrained_dir(models.model_name))
    if model_fields(runs_arch) != model_fields(arch):
        raise ConfigError(f"--model {arch.name!r} has dims {model_fields(arch)}, but the models at {source} were "
                          f"fine-tuned from {models.model_name!r} with dims {model_fields(runs_arch)}")
    result = compress_models(models, spec, arch, settings, glue_dir=glue_dir, log=log)
    names = [m.task.name for m in models.models]
    plan: DeltaPlan = dataclasses.replace(result["plan"], model=model_fields(arch), tasks=tuple(names))
    labels = [m.task.num_labels for m in models.models]
    stored = {}
    for t, model in enumerate(models.models):
        stored[model.task.name] = pack_task(result["params"][model.task.name], result["stored"][model.task.name],
                                            plan, t, spec)
    trunk_units = sorted({u for (t, u), e in plan.active().items() if e.base == "trunk"})
    trunk = {f"unit_{u}": next(m.bases["trunk"][f"unit_{u}"] for m in models.models
                               if f"unit_{u}" in m.bases.get("trunk", {}))  # a task that owns a copy of unit u
             for u in trunk_units}
    save_deltas(out / DELTAS_FILE, stored, trunk)
    if trace is None:
        from mgen_jax.workload.glue import glue_trace

        trace = glue_trace(names, glue_dir=glue_dir, max_length=models.max_length)
    report = {
        "format": "mgen_jax compressed model, v1", "source": models.source, "source_kind": models.kind,
        "model": models.model_name, "tasks": names, "hw": spec.name, "plan": plan.to_dict(),
        "settings": {"tolerance_points": settings.tolerance_points, "budgets": list(settings.budgets),
                     "refine_steps": settings.refine_steps, "calibration_rows": settings.calibration_rows,
                     "bit_levels": list(settings.levels(spec)), "bias_correction": settings.bias_correction,
                     "error_feedback": settings.error_feedback,
                     "heldout_confidence": settings.heldout_confidence},
        "chosen_on": "held-out split carved from train (mgen_jax.data.splits); dev is never used to choose",
        "base_choice": result["base_choice"],
        "tasks_profiled": {task: {kind: _record(r) for kind, r in kinds.items()}
                           for task, kinds in result["records"].items()},
        "heldout": {"uncompressed": {n: result["chosen"][n]["heldout_reference_score"] for n in names},
                    "compressed": {n: result["chosen"][n].get("heldout_score",
                                                              result["chosen"][n]["heldout_reference_score"])
                                   for n in names}},
        "hardware": hardware_summary(spec, arch, plan, names, labels, trace),
    }
    _, reloaded = load_compressed(out, spec, report=report)
    for name in names:  # the stored form must give back exactly what was evaluated
        for a, b in zip(_leaves(reloaded[name]), _leaves(result["params"][name])):
            if not np.array_equal(np.asarray(a), np.asarray(b)):
                raise AssertionError(f"{out / DELTAS_FILE}: task {name} does not load back to the evaluated model")
    if evaluate_dev:
        report["dev"] = dev_scores(models, result, glue_dir) | {
            "note": "official dev, evaluated once per model after every choice was made; reported, never chosen on"}
    report["wall_clock_s"] = time.perf_counter() - start
    write_json_atomic(out / REPORT_FILE, report)
    log(f"wrote {out / REPORT_FILE} and {out / DELTAS_FILE}: crossbars {report['hardware']['uncompressed']['crossbars']:,}"
        f" -> {report['hardware']['compressed']['crossbars']:,} ({report['hardware']['area_ratio']:.3f}x), energy "
        f"{report['hardware']['energy_ratio']:.3f}x")
    return report


def _leaves(tree) -> list:
    import jax

    return jax.tree_util.tree_leaves(tree)
