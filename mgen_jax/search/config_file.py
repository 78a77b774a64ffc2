"""A search config's YAML form: sections of fields, ``extends:`` another config, and the archive of moved configs.

``SearchConfig`` is flat in Python (every phase reads ``cfg.<field>``); its YAML groups the fields into sections by
what they do, declared once in ``SECTIONS``:

```yaml
extends: glue5.yaml          # optional: start from this config (a path relative to this file's folder)
name: glue5_bam3x            # optional: the run folder's and the records' name (default: the file's stem)
hw: isaac
seed: 0
data: {tasks: [SST-2, CoLA], max_length: 128}
finetune: {finetune_budget: independent}
gradient: {energy_targets: [0.5]}
```

A file that ``extends`` another is merged over it section by section and, inside a section, field by field (a field
whose value is a list or a mapping is replaced whole); ``name`` is never inherited, so that two files never share
a run folder. The chain is read by ``io.read_extends_chain``, as the hardware presets' is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mgen_jax.errors import ConfigError
from mgen_jax.io import describe_value, not_a_regular_file, read_extends_chain

# Every SearchConfig field but the top-level ones, in the section that says what it is for (each field once).
SECTIONS: dict[str, tuple[str, ...]] = {
    # what every phase reads: the tasks and their rows, the encoder, the mixed batches, the independent models
    # (the reference rows, caps, budgets, teachers and the claim's bar) and the held-out selection split
    "data": ("tasks", "model", "pooling", "independent_runs", "max_length", "buckets", "per_task_batch",
             "length_window", "max_dev_per_task", "max_train_per_task", "data_seed", "heldout_fraction",
             "heldout_max_rows", "heldout_seed"),
    # what every training phase shares: the optimiser's weight decay and learning-rate warm-up, checkpoints
    "train": ("weight_decay", "warmup_ratio", "compute_dtype", "checkpoint_every_steps"),
    # the relaxed model trained with its branch logits frozen (lr_weights: the lambda searches' weights too)
    "warmup": ("warmup_steps", "warmup_sampling", "lr_weights"),
    # the lambda searches: the branch logits trained against lambda x energy, and the task weights of their loss
    # (which budget selection reads too)
    "search": ("search_steps", "lambdas", "sampling", "lr_logits", "temperature_start", "temperature_end",
               "search_task_weights", "task_weight_min_drop"),
    # how every discrete model is fine-tuned: budget, start, learning rates, task weights, distillation
    "finetune": ("finetune_steps", "finetune_budget", "finetune_batch_size", "finetune_init", "lr_finetune",
                 "finetune_own_lr_scale", "finetune_task_weights", "distill_weight", "distill_temperature",
                 "distill_anneal", "teacher_run"),
    # which trees the energy budgets pick (on the warm-up's profile), the rule of the headline claim and its goal
    "selection": ("energy_budgets", "budgets_at_baselines", "profile_metric", "profile_batches", "claim_seeds",
                  "claim_margin", "goal_efficiency", "goal_max_drop_points"),
    # the other models a sweep trains beside its picks: baselines and trees given by their branch points
    "sweep": ("full_sharing", "uniform_branch_points", "uniform_at_budgets", "heuristic_thresholds",
              "redundancy_file", "trees"),
}
TOP_LEVEL = ("name", "hw", "seed")
# a section of its own: the fields of search/gradient.py's GradientSettings, kept nested in SearchConfig too
GRADIENT = "gradient"
SECTION_OF = {field: section for section, fields in SECTIONS.items() for field in fields}

# Superseded recipe-study configs moved to configs/search/archive/ (configs/search/archive/README.md): the old path
# fails with a message naming the new one.
ARCHIVED = ("glue5_bam.yaml", "glue5_distill.yaml", "glue5_ft600.yaml", "glue5_ftweights.yaml",
            "glue5_steps200.yaml", "glue5_unweighted.yaml")


def check_moved(path: Path) -> None:
    """ConfigError naming the new path if ``path`` is a config that moved to the archive beside it."""
    if path.name in ARCHIVED and not path.exists() and path.absolute().parent.name == "search":
        raise ConfigError(f"search config {path} has moved to {path.parent / 'archive' / path.name} (a superseded "
                          "recipe study: configs/search/archive/README.md says what it produced)")


def _resolve(base: str, folder: Path) -> Path:
    path = folder / base
    check_moved(path)
    unfit = not_a_regular_file(path)
    if unfit:
        raise ConfigError(f"search config {path} {unfit} (named by 'extends' in a config in {folder})")
    return path


def _section_fields(section: str) -> tuple[str, ...]:
    if section == GRADIENT:
        import dataclasses

        from mgen_jax.search.gradient import GradientSettings

        return tuple(f.name for f in dataclasses.fields(GradientSettings))
    return SECTIONS[section]


def _where(field: str) -> str:
    return f"section '{SECTION_OF[field]}:'" if field in SECTION_OF else "the top level"


def _check_file(path: Path, values: dict[str, Any]) -> None:
    """ConfigError naming ``path`` and the key for a field outside its section, an unknown field or section, or a
    section that is not a mapping."""
    what = f"search config {path}"
    for key, value in values.items():
        if key in TOP_LEVEL:
            continue
        if key in SECTION_OF:
            raise ConfigError(f"{what}: field '{key}' belongs in section '{SECTION_OF[key]}:'")
        if key not in SECTIONS and key != GRADIENT:
            raise ConfigError(f"{what}: unknown field or section {describe_value(key, 60)}; sections: "
                              f"{[*SECTIONS, GRADIENT]}, top-level fields: {[*TOP_LEVEL, 'extends']}")
        if not isinstance(value, dict):
            raise ConfigError(f"{what}: section '{key}:' must be a mapping of field: value, got "
                              f"{describe_value(value)}")
        known = _section_fields(key)
        for field in value:
            if field in known:
                continue
            if key != GRADIENT and (field in SECTION_OF or field in TOP_LEVEL):
                raise ConfigError(f"{what}: field '{field}' belongs in {_where(field)}, not in section '{key}:'")
            raise ConfigError(f"{what}: unknown field {describe_value(field, 60)} in section '{key}:'; its "
                              f"fields: {list(known)}")


def nest(values: dict[str, Any]) -> dict[str, Any]:
    """A flat mapping of SearchConfig fields (``to_dict()``, or some of its fields) in sections: what a YAML file
    holds. A key that is no field stays at the top level, where the loader reports it."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECTION_OF:
            out.setdefault(SECTION_OF[key], {})[key] = value
        else:
            out[key] = value
    return out


def read_search_yaml(path: str | Path) -> dict[str, Any]:
    """The flat field values of the search config at ``path`` (its ``extends`` chain merged), keyed as SearchConfig's
    fields; ConfigError naming the file and the key for anything out of place."""
    path = Path(path)
    check_moved(path)
    chain = read_extends_chain(path, "search config", resolve=_resolve, check=_check_file)
    merged: dict[str, Any] = {}
    for _, values in chain:
        for key, value in values.items():
            if key in TOP_LEVEL:
                merged[key] = value
            else:
                merged.setdefault(key, {}).update(value)
    merged.pop("name", None)  # never inherited: the name is the file's own, or its stem
    flat = {"name": chain[-1][1].get("name", path.stem)}
    for key, value in merged.items():
        if key in SECTIONS:
            flat.update(value)
        else:
            flat[key] = value
    return flat


def apply_overrides(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, str]:
    """Apply field overrides (``--set``, by field name) to the flat ``values`` of ``read_search_yaml``, in place;
    returns {field: where it came from}. ``section.field`` names a field by its section too; the ``gradient``
    mapping is merged field by field (``gradient.seeds=[1]``, or ``gradient={seeds: [1]}``), never replaced whole,
    so that its other fields keep the file's values. An unknown field of a section is a ConfigError naming it."""
    sources = {}
    for key, value in overrides.items():
        section, dot, field = key.partition(".") if isinstance(key, str) else (key, "", "")
        if not dot and key == GRADIENT and isinstance(value, dict):
            values[GRADIENT] = {**(values.get(GRADIENT) or {}), **value}
        elif not dot:
            values[key] = value
        elif section not in SECTIONS and section != GRADIENT:
            raise ConfigError(f"--set {describe_value(key, 60)}: unknown section {describe_value(section, 40)}; "
                              f"sections: {[*SECTIONS, GRADIENT]}")
        elif field not in _section_fields(section):
            raise ConfigError(f"--set {describe_value(key, 60)}: unknown field {describe_value(field, 40)} in section "
                              f"'{section}:'; its fields: {list(_section_fields(section))}")
        elif section == GRADIENT:
            values[GRADIENT] = {**(values.get(GRADIENT) or {}), field: value}
        else:
            values[field] = value
        target = GRADIENT if section == GRADIENT else (field if dot else key)
        sources[target] = f"from the command line: {key}"
    return sources
