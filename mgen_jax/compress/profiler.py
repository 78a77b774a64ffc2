"""The profiler: each task's compression within an accuracy tolerance on its held-out split (never dev).

For one task and one base kind:

1. calibration: the input second moment and the gradient Fisher of every private crossbar matrix, on the first
   ``calibration_rows`` held-out rows (``stats.py``);
2. options: for every matrix and bit level, the blocks ranked by their output effect and the predicted error of
   keeping the top k (``blocks.bit_option``);
3. the walk: for crossbar budgets ``budgets`` (fractions of what the private units take uncompressed), largest first,
   the allocation that fits (``blocks.allocate_to_budget``) is evaluated on every held-out row; the walk stops at the
   first budget whose held-out score is more than ``tolerance_points`` below the uncompressed model's, then bisects
   ``refine_steps`` times between the last budget that passed (1.0, exact, if none did) and that one. The task's
   compression is the smallest budget that passed (none below 1.0: its private units stay uncompressed). The kept
   blocks are stored with error feedback and bias correction (``compressed_model``).
   With ``heldout_confidence`` q set, a budget passes only if the q-quantile of its drop under a paired bootstrap of
   the held-out rows (``paired_drop_quantile``) is within the tolerance, not its drop on the one split: a split of a
   few hundred rows (MRPC 367, RTE 249) otherwise passes compressions whose drop was luck.

``compress_models`` runs it for every task and base kind, picks the base kinds (per task) that give the fewest
crossbars in all (bases counted once, hw/delta.py) and returns a ``DeltaPlan`` with everything it measured.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any, Callable, Sequence

import numpy as np

from mgen_jax.compress.blocks import Choice, CompressedMatrix, allocate_to_budget, bit_option, compress_matrix
from mgen_jax.compress.models import OP_NAMES, Evaluator, ModelSet, TaskModel, encoded_split, unit_kind
from mgen_jax.data.glue import GlueTask
from mgen_jax.data.metrics import main_score, task_metrics
from mgen_jax.errors import ConfigError
from mgen_jax.hw.arch import BertArch, Unit
from mgen_jax.hw.delta import DeltaMatrix, DeltaPlan, DeltaUnit, delta_grid, grid_fields
from mgen_jax.hw.density import matrix_key
from mgen_jax.hw.mapping import map_matrix
from mgen_jax.io import describe_value
from mgen_jax.hw.spec import HardwareSpec

DEFAULT_BUDGETS = (0.5, 0.35, 0.25, 0.18, 0.13, 0.09, 0.065, 0.045, 0.03, 0.02, 0.01, 0.0)
BOOTSTRAP_DRAWS = 1000


MAX_BUDGETS = 64
MAX_REFINE_STEPS = 64  # bisection steps: 64 halve a fraction below float resolution
MAX_CALIBRATION_ROWS = 1 << 20


@dataclasses.dataclass(frozen=True)
class ProfileSettings:
    """How the profiler chooses (every field is validated; ConfigError names it)."""

    tolerance_points: float = 0.5  # largest held-out main-score drop per task (x 100 points)
    budgets: tuple[float, ...] = DEFAULT_BUDGETS  # crossbar budgets tried, fractions of the uncompressed private units
    refine_steps: int = 3  # bisection steps after the first budget that fails (from 1.0 if the first one fails)
    calibration_rows: int = 256  # held-out rows for the calibration statistics
    bit_levels: tuple[int, ...] | None = None  # delta bits tried (default: multiples of cell_bits up to weight_bits)
    base_kinds: tuple[str, ...] | None = None  # bases tried (default: every kind the source offers)
    bias_correction: bool = True  # fold the mean output error of each compressed matrix into its (digital) bias
    error_feedback: bool = True  # round the kept blocks with error feedback over the input rows (blocks.py, OPTQ)
    heldout_confidence: float | None = None  # q in [0.5, 1): the walk bounds the q-quantile of the bootstrap drop

    def __post_init__(self) -> None:
        t = self.tolerance_points
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t) or t < 0:
            raise ConfigError(f"profiler field 'tolerance_points' must be a finite number >= 0, got {t!r}")
        budgets = tuple(self.budgets)
        if not budgets or len(budgets) > MAX_BUDGETS or any(
                isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 1 for x in budgets) \
                or list(budgets) != sorted(budgets, reverse=True):
            raise ConfigError(f"profiler field 'budgets' must be 1 to {MAX_BUDGETS} fractions in [0, 1], largest first, "
                              f"got {describe_value(budgets)}")
        q = self.heldout_confidence
        if q is not None and (isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.5 <= q < 1):
            raise ConfigError(f"profiler field 'heldout_confidence' must be a number in [0.5, 1) or null, got {q!r}")
        for field in ("refine_steps", "calibration_rows"):
            value = getattr(self, field)
            low, high = (1, MAX_CALIBRATION_ROWS) if field == "calibration_rows" else (0, MAX_REFINE_STEPS)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"profiler field '{field}' must be an integer in {low}..{high:,}, got "
                                  f"{describe_value(value)}")
        for field in ("bit_levels", "base_kinds"):
            value = getattr(self, field)
            if value is not None and len(value) > 64:
                raise ConfigError(f"profiler field '{field}' lists {len(value):,} values; at most 64")

    def levels(self, spec: HardwareSpec) -> tuple[int, ...]:
        if self.bit_levels is None:
            return tuple(b for b in range(2, spec.weight_bits + 1) if b % spec.cell_bits == 0 or b == spec.weight_bits)
        for b in self.bit_levels:
            if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= spec.weight_bits:
                raise ConfigError(f"profiler field 'bit_levels' must hold integers in 2..{spec.weight_bits}, got "
                                  f"{describe_value(b)}")
        return tuple(sorted(set(self.bit_levels)))


def matrices(model: TaskModel) -> list[tuple[int, str, str]]:
    """(unit, flax name, hw op name) of every crossbar matrix of the task's private units."""
    return [(u, flax, op) for u in model.private for flax, op in OP_NAMES[unit_kind(u)].items()]


def _key(u: int, op: str) -> str:
    return matrix_key(Unit(u, u // 2, unit_kind(u)).name, op)


def _delta(model: TaskModel, kind: str, u: int, flax: str) -> tuple[np.ndarray, np.ndarray]:
    base = np.asarray(model.bases[kind][f"unit_{u}"][flax]["kernel"], dtype=np.float64)
    tuned = np.asarray(model.params["encoder"][f"unit_{u}"][flax]["kernel"], dtype=np.float64)
    return base, tuned - base


def compressed_model(model: TaskModel, kind: str, choices: dict[str, Choice], spec: HardwareSpec,
                     calibration: dict[str, dict] | None = None) -> tuple[dict, dict[str, CompressedMatrix]]:
    """(the task's classifier with every private matrix replaced by base + its compressed delta, the stored deltas).

    The biases, LayerNorms, embeddings and head stay the task's own (digital, not on crossbars). ``calibration``
    ({matrix key: {"moment": H [K, K], "mean": [K] or None}}, ``calibration_of``): the deltas are rounded with error
    feedback under H (blocks.compress_matrix), and where a mean is given the bias absorbs the mean output error,
    b + mean^T (W - W_hat). Without it: plain rounding, biases unchanged."""
    encoder = dict(model.params["encoder"])
    stored = {}
    for u, flax, op in matrices(model):
        key = _key(u, op)
        base, delta = _delta(model, kind, u, flax)
        grid = delta_grid(spec, *delta.shape, choices[key].bits)
        cal = (calibration or {}).get(key, {})
        stored[key] = compress_matrix(delta, grid, choices[key], spec.weight_bits, cal.get("moment"))
        kernel = (base + stored[key].values).astype(np.float32)
        unit = dict(encoder[f"unit_{u}"])
        layer = dict(unit[flax]) | {"kernel": kernel}
        if cal.get("mean") is not None:
            shift = np.asarray(cal["mean"], np.float64) @ (base + delta - kernel.astype(np.float64))
            layer["bias"] = (np.asarray(layer["bias"], np.float64) + shift).astype(np.float32)
        unit[flax] = layer
        encoder[f"unit_{u}"] = unit
    return {"encoder": encoder, "head": model.params["head"]}, stored


def calibration_of(stats: dict, settings: ProfileSettings) -> dict[str, dict]:
    """What ``compressed_model`` uses of the calibration statistics: the input moment the errors are measured with
    (the covariance when the biases absorb the mean error, else the second moment; None without error feedback) and
    the mean (None without bias correction)."""
    moment = "covariance" if settings.bias_correction else "second_moment"
    return {k: {"moment": v[moment] if settings.error_feedback else None,
                "mean": v["mean"] if settings.bias_correction else None} for k, v in stats.items()}


def task_options(model: TaskModel, kind: str, stats: dict, spec: HardwareSpec, levels: Sequence[int],
                 bias_correction: bool) -> dict:
    """{matrix key: [BitOption per bit level]} of the task's private matrices over base ``kind``: errors weighted by
    the inputs' covariance when the biases absorb the mean error, else by their second moment."""
    out = {}
    for u, flax, op in matrices(model):
        _, delta = _delta(model, kind, u, flax)
        key = _key(u, op)
        s = stats[key]
        moment = s["covariance"] if bias_correction else s["second_moment"]
        out[key] = [bit_option(delta, delta_grid(spec, *delta.shape, bits), moment, s["fisher"], spec.weight_bits)
                    for bits in levels]
    return out


def uncompressed_crossbars(model: TaskModel, spec: HardwareSpec) -> int:
    total = 0
    for u, flax, _ in matrices(model):
        k, n = np.shape(model.params["encoder"][f"unit_{u}"][flax]["kernel"])
        total += map_matrix(spec, k, n).crossbars
    return total


def calibration_batches(data, rows: int, batch_size: int = 32) -> list[dict[str, np.ndarray]]:
    from mgen_jax.data.pipeline import batch_plan, collate

    lengths = data.lengths[: min(rows, len(data))]
    return [collate(data, r, pad, batch_size) for r, pad in batch_plan(lengths, batch_size, buckets=(32, 64, 128),
                                                                      shuffle=False)]


def task_stats(model: TaskModel, bert, pooling: str, data, rows: int) -> dict:
    """Calibration statistics of the task's private matrices on its first ``rows`` held-out rows."""
    import jax.numpy as jnp

    from mgen_jax.compress.stats import calibration_stats
    from mgen_jax.model.bert import SequenceClassifier
    from mgen_jax.train.finetune import per_example_loss

    module = SequenceClassifier(bert, model.task.num_labels, pooling)
    apply = lambda p, b: module.apply({"params": p}, b["input_ids"], b["attention_mask"], b["token_type_ids"])
    labels = lambda b: b["labels"].astype(jnp.float32 if model.task.is_regression else jnp.int32)
    loss = lambda out, b: per_example_loss(model.task, out, labels(b))
    wanted = {_key(u, op) for u, _, op in matrices(model)}
    return calibration_stats(apply, loss, model.params, calibration_batches(data, rows), lambda k: k in wanted)


def paired_drop_quantile(task: GlueTask, reference_outputs: np.ndarray, outputs: np.ndarray, labels: np.ndarray,
                         quantile: float, *, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> float:
    """The ``quantile`` of a task's score drop (points: main score of ``reference_outputs`` minus that of ``outputs``)
    over ``draws`` paired bootstrap resamples of the rows (the same rows, drawn with replacement from a fixed seed,
    score both models; Efron and Tibshirani 1993). Equal outputs give 0."""
    reference_outputs, outputs, labels = np.asarray(reference_outputs), np.asarray(outputs), np.asarray(labels)
    rng = np.random.default_rng(seed)
    score = lambda out, idx: main_score(task, task_metrics(task, out[idx], labels[idx]))
    drops = np.empty(draws)
    for i in range(draws):
        idx = rng.integers(0, len(labels), len(labels))
        drops[i] = score(reference_outputs, idx) - score(outputs, idx)
    return float(np.quantile(drops, quantile))


def profile_task(model: TaskModel, kind: str, spec: HardwareSpec, settings: ProfileSettings, evaluator: Evaluator,
                 heldout, reference: float, stats: dict, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The held-out walk of one task over base ``kind`` (module docstring); returns the record, with the chosen
    ``choices`` ({matrix key: Choice}) or None when no budget passed."""
    start = time.perf_counter()
    options = task_options(model, kind, stats, spec, settings.levels(spec), settings.bias_correction)
    full = uncompressed_crossbars(model, spec)
    walk: list[dict[str, Any]] = []
    q = settings.heldout_confidence
    reference_outputs = None if q is None else evaluator.outputs(model.task, model.params, heldout)

    def trial(fraction: float) -> tuple[bool, dict[str, Choice]]:
        mu, choices = allocate_to_budget(options, fraction * full)
        params, _ = compressed_model(model, kind, choices, spec, calibration_of(stats, settings))
        outputs = evaluator.outputs(model.task, params, heldout)
        score = main_score(model.task, task_metrics(model.task, outputs, heldout.labels))
        xbars = sum(c.crossbars for c in choices.values())
        entry = {"budget_fraction": fraction, "delta_crossbars": xbars, "heldout_score": score,
                 "drop_points": reference - score}
        bound = reference - score
        if q is not None:
            bound = entry["drop_quantile_points"] = paired_drop_quantile(model.task, reference_outputs, outputs,
                                                                         heldout.labels, q)
        ok = bound <= settings.tolerance_points
        walk.append(entry | {"passed": ok, "mu": mu, "predicted_error": float(sum(c.error for c in choices.values()))})
        log(f"  {model.task.name} base {kind}: budget {fraction:.3f} -> {xbars} crossbars, held-out "
            f"{score:.2f} ({reference - score:+.2f}{'' if q is None else f'; q{q:g} {bound:+.2f}'}) "
            f"{'ok' if ok else 'over tolerance'}")
        return ok, choices

    best, passed_at, failed_at = None, 1.0, None  # the full budget passes: every block at full bits is exact
    for fraction in settings.budgets:
        ok, choices = trial(fraction)
        if not ok:
            failed_at = fraction
            break
        best, passed_at = choices, fraction
    if failed_at is not None:
        for _ in range(settings.refine_steps):
            mid = (passed_at + failed_at) / 2
            ok, choices = trial(mid)
            if ok:
                best, passed_at = choices, mid
            else:
                failed_at = mid
    if best is not None and sum(c.crossbars for c in best.values()) >= full:
        best = None  # a delta as large as the units saves nothing
    record = {"task": model.task.name, "base": kind, "uncompressed_crossbars": full,
              "heldout_reference_score": reference, "walk": walk,
              "chosen_budget_fraction": None if best is None else passed_at, "choices": best,
              "profile_wall_clock_s": time.perf_counter() - start}
    if best is not None:
        record["delta_crossbars"] = sum(c.crossbars for c in best.values())
        record["heldout_score"] = next(w["heldout_score"] for w in walk if w["budget_fraction"] == passed_at)
    return record


def plan_for(models: ModelSet, records: dict[str, dict], spec: HardwareSpec) -> DeltaPlan:
    """The DeltaPlan of the chosen record per task (a task without a passing budget gets no entries)."""
    units = {}
    for t, model in enumerate(models.models):
        record = records[model.task.name]
        if record["choices"] is None:
            continue
        for u in model.private:
            mats = tuple(DeltaMatrix(op, record["choices"][_key(u, op)].bits, record["choices"][_key(u, op)].kept)
                         for op in OP_NAMES[unit_kind(u)].values())
            units[(t, u)] = DeltaUnit(record["base"], mats)
    return DeltaPlan(models.branch_points, units, grid_fields(spec))


def total_crossbars(spec: HardwareSpec, arch: BertArch, plan: DeltaPlan, num_labels: Sequence[int]) -> int:
    from mgen_jax.hw.ops import model_parts, plan_delta_ops
    from mgen_jax.hw.tree import SharingTree
    from mgen_jax.sim.simulate import footprint

    parts = model_parts(spec, arch, tuple(num_labels))
    tree = SharingTree.from_branch_points(plan.branch_points, arch.num_units)
    return footprint(spec, parts, tree, plan, plan_delta_ops(spec, parts, plan)).crossbars


def compress_models(models: ModelSet, spec: HardwareSpec, arch: BertArch, settings: ProfileSettings, *, glue_dir=None,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Profile every task over every base kind (held-out only) and choose the base kinds; returns {"plan",
    "records" (per task and kind), "chosen" (per task: its record), "params" (per task: the compressed classifier),
    "stored" (per task: {matrix key: CompressedMatrix}), "base_choice" (how the base kinds were chosen)}."""
    from mgen_jax.model.pretrained import load_pretrained

    pre = load_pretrained(models.model_name)
    evaluator = Evaluator(pre.config, models.pooling)
    kinds = settings.base_kinds or models.base_kinds
    unknown = [k for k in kinds if k not in models.base_kinds]
    if unknown:
        raise ConfigError(f"base kind(s) {unknown} are not available for {models.kind} models (they offer "
                          f"{list(models.base_kinds)})")
    records: dict[str, dict[str, dict]] = {}
    calibration: dict[str, dict] = {}
    for model in models.models:
        heldout = encoded_split(models, model.task, "heldout", pre.tokenizer, glue_dir)
        reference, _ = evaluator.score(model.task, model.params, heldout)
        stats = task_stats(model, pre.config, models.pooling, heldout, settings.calibration_rows) if model.private \
            else {}
        calibration[model.task.name] = calibration_of(stats, settings)
        log(f"{model.task.name}: held-out {reference:.2f} uncompressed ({len(heldout)} rows, {len(model.private)} "
            f"private units)")
        records[model.task.name] = {}
        for kind in kinds:
            if not model.private:
                records[model.task.name][kind] = {"task": model.task.name, "base": kind, "choices": None, "walk": [],
                                                  "heldout_reference_score": reference, "uncompressed_crossbars": 0}
                continue
            records[model.task.name][kind] = profile_task(model, kind, spec, settings, evaluator, heldout, reference,
                                                          stats, log)
    # base kinds: the combination (one per task) with the fewest crossbars in all, every base stored once
    labels = [t.num_labels for t in models.tasks]
    combos = []
    for combo in itertools.product(kinds, repeat=len(models.models)):
        chosen = {m.task.name: records[m.task.name][k] for m, k in zip(models.models, combo)}
        combos.append((total_crossbars(spec, arch, plan_for(models, chosen, spec), labels), combo, chosen))
    combos.sort(key=lambda c: (c[0], [kinds.index(k) for k in c[1]]))
    xbars, combo, chosen = combos[0]
    plan = plan_for(models, chosen, spec)
    params, stored = {}, {}
    for m in models.models:
        record = chosen[m.task.name]
        params[m.task.name], stored[m.task.name] = (m.params, {}) if record["choices"] is None else compressed_model(
            m, record["base"], record["choices"], spec, calibration[m.task.name])
    uniform = {k: next(c[0] for c in combos if set(c[1]) == {k}) for k in kinds}
    return {"plan": plan, "records": records, "chosen": chosen, "params": params, "stored": stored,
            "evaluator": evaluator,
            "tokenizer": pre.tokenizer,
            "base_choice": {"per_task": dict(zip([m.task.name for m in models.models], combo)),
                            "crossbars": xbars, "crossbars_with_one_base_kind": uniform,
                            "chosen_on": "held-out split (each option passed the held-out tolerance); fewest crossbars"}}
