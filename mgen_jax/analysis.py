"""Redundancy analysis of independently fine-tuned task models (DESIGN.md section 6).

Per sharing unit u:
- the relative weight change of task t's unit from the pretrained one, ||theta_tu - theta_0u|| / ||theta_0u||
  (Frobenius norm over every parameter of the unit);
- the linear CKA (Kornblith et al., ICML 2019) between the token representations at the output of unit u of task t's
  model and of the pretrained model, and between every pair of task models, on one probe set of real dev sentences
  (each model runs its own units on the same inputs). The probe sentences come from the tasks' held-out splits
  (data/splits.py), because the heuristic that reads this record chooses models: dev is only reported.
High CKA / low change means a unit that the tasks could share: the analysis-driven sharing heuristic reads this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.data.glue import get_task
from mgen_jax.data.splits import HeldoutSpec, train_and_heldout
from mgen_jax.data.pipeline import collate, encode_split
from mgen_jax.errors import ConfigError
from mgen_jax.io import describe_value, save_figure_atomic, write_json_atomic
from mgen_jax.model.bert import BertConfig, BertEncoder
from mgen_jax.model.pretrained import load_pretrained
from mgen_jax.train.checkpoint import restore_checkpoint


def _norm_sq(tree: Any) -> float:
    return float(sum(np.sum(np.square(np.asarray(x, dtype=np.float64))) for x in jax.tree.leaves(tree)))


def relative_weight_change(base: Any, tuned: Any, num_units: int) -> np.ndarray:
    """[U] ||tuned_u - base_u|| / ||base_u|| for the encoder parameter trees ``base`` and ``tuned``."""
    out = np.zeros(num_units)
    for u in range(num_units):
        key = f"unit_{u}"
        delta = jax.tree.map(lambda a, b: np.asarray(a, np.float64) - np.asarray(b, np.float64), tuned[key], base[key])
        out[u] = np.sqrt(_norm_sq(delta) / _norm_sq(base[key]))
    return out


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations [N, D1], [N, D2] of the same N items (1 = identical up to rotation/scale)."""
    if x.shape[0] != y.shape[0]:
        raise ConfigError(f"CKA needs the same items: {x.shape[0]} vs {y.shape[0]} rows")
    x = np.asarray(x, np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, np.float64) - np.mean(y, axis=0)
    cross = np.linalg.norm(x.T @ y) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def probe_batches(tasks: Sequence[str], tokenizer, *, per_task: int, max_length: int, glue_dir=None, seed: int = 0,
                  heldout: HeldoutSpec = HeldoutSpec()):
    """Batches of ``per_task`` examples of every task's held-out split (seeded), padded to their longest example."""
    batches = []
    for name in tasks:
        _, rows = train_and_heldout(name, heldout, glue_dir=glue_dir)
        if not len(rows):
            raise ConfigError(f"the redundancy probe reads the held-out split, and {name} has none")
        idx = np.sort(np.random.default_rng([seed, 11]).permutation(len(rows))[:per_task])
        enc = encode_split(rows.take(idx), tokenizer, max_length=max_length)
        batches.append(collate(enc, np.arange(len(enc)), int(enc.lengths.max()), len(enc)))
    return batches


def unit_representations(cfg: BertConfig, encoder_params: Any, batches) -> list[np.ndarray]:
    """[U] arrays [N_tokens, H]: each unit's output at every real token of the probe batches."""
    module = BertEncoder(cfg)
    apply = jax.jit(lambda p, b: module.apply({"params": p}, b["input_ids"], b["attention_mask"],
                                              b["token_type_ids"], output_unit_states=True)[1])
    per_unit: list[list[np.ndarray]] = [[] for _ in range(cfg.num_units)]
    for batch in batches:
        states = apply(encoder_params, {k: jnp.asarray(v) for k, v in batch.items()})
        real = batch["attention_mask"].astype(bool)
        for u, s in enumerate(states):
            per_unit[u].append(np.asarray(s)[real])
    return [np.concatenate(xs) for xs in per_unit]


def analyze(
    task_params: dict[str, Any], *, model: str = "minilm-l6", per_task: int = 64, max_length: int = 128, glue_dir=None,
    heldout: HeldoutSpec = HeldoutSpec(),
) -> dict[str, Any]:
    """The redundancy record of fine-tuned encoders ``task_params`` (task name -> encoder parameter tree), probed
    on ``heldout`` rows (the runs' own held-out split: never trained on)."""
    tasks = list(task_params)
    if len(tasks) < 2:  # a pairwise CKA of one model with itself would read 1.0
        raise ConfigError(f"the redundancy analysis compares task models: give at least two tasks, got {tasks}")
    base = load_pretrained(model)
    cfg = base.config
    batches = probe_batches(tasks, base.tokenizer, per_task=per_task, max_length=max_length, glue_dir=glue_dir,
                            heldout=heldout)
    reps = {"pretrained": unit_representations(cfg, base.params, batches)}
    for t in tasks:
        reps[t] = unit_representations(cfg, task_params[t], batches)
    units = [f"L{u // 2 + 1}.{'attn' if u % 2 == 0 else 'ffn'}" for u in range(cfg.num_units)]
    change = {t: relative_weight_change(base.params, task_params[t], cfg.num_units).tolist() for t in tasks}
    cka_base = {t: [linear_cka(reps[t][u], reps["pretrained"][u]) for u in range(cfg.num_units)] for t in tasks}
    pairwise = []
    for u in range(cfg.num_units):
        m = np.ones((len(tasks), len(tasks)))
        for i, a in enumerate(tasks):
            for j in range(i + 1, len(tasks)):
                m[i, j] = m[j, i] = linear_cka(reps[a][u], reps[tasks[j]][u])
        pairwise.append(m.tolist())
    mean_pairwise = [float(np.mean(np.asarray(m)[~np.eye(len(tasks), dtype=bool)])) for m in pairwise]
    return {
        "model": model, "tasks": tasks, "units": units, "probe": f"{per_task} seeded held-out examples per task ({heldout.to_dict()}), "
        f"{int(sum(b['attention_mask'].sum() for b in batches))} real tokens", "relative_weight_change": change,
        "cka_to_pretrained": cka_base, "pairwise_cka": pairwise, "mean_pairwise_cka": mean_pairwise,
        "mean_cka_to_pretrained": np.mean([cka_base[t] for t in tasks], axis=0).tolist(),
    }


def plot_redundancy(record: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, units = record["tasks"], record["units"]
    change = np.array([record["relative_weight_change"][t] for t in tasks])
    cka = np.array([record["cka_to_pretrained"][t] for t in tasks])
    fig, axes = plt.subplots(3, 1, figsize=(9, 8.5), gridspec_kw={"height_ratios": [1, 1, 0.8]})
    for ax, data, title, cmap in (
        (axes[0], change, "relative weight change from the pretrained unit (lower = more shareable)", "viridis_r"),
        (axes[1], cka, "linear CKA to the pretrained model at the unit output (higher = more shareable)", "viridis"),
    ):
        im = ax.imshow(data, aspect="auto", cmap=cmap)
        ax.set_yticks(range(len(tasks)), tasks)
        ax.set_xticks(range(len(units)), units, fontsize=8)
        ax.set_title(title, fontsize=10)
        for (i, j), v in np.ndenumerate(data):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if cmap == "viridis" and v < 0.6 else "k")
        fig.colorbar(im, ax=ax, fraction=0.03)
    axes[2].plot(range(len(units)), record["mean_pairwise_cka"], "o-", label="mean CKA between task models")
    axes[2].plot(range(len(units)), record["mean_cka_to_pretrained"], "s--", label="mean CKA to pretrained")
    axes[2].set_xticks(range(len(units)), units, fontsize=8)
    axes[2].set_ylim(0, 1.02)
    axes[2].legend(fontsize=8)
    axes[2].set_ylabel("linear CKA")
    fig.suptitle(f"Redundancy of independently fine-tuned {record['model']} models", fontsize=11)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)
    return path


def load_task_encoders(run_dir: Path, tasks: Sequence[str]) -> dict[str, Any]:
    """Encoder parameters of runs/<...>/<TASK>/final_params.msgpack for every task."""
    params = {}
    for name in tasks:
        task = get_task(name).name
        path = Path(run_dir) / task / "final_params.msgpack"
        if not path.is_file():
            raise ConfigError(f"no fine-tuned model for {task}: {path} not found (run mgen finetune first)")
        tuned = restore_checkpoint(path, None)
        if not isinstance(tuned, dict) or not isinstance(tuned.get("encoder"), dict):
            raise ConfigError(f"{path}: not a fine-tuned model (no 'encoder' parameters)")
        params[task] = tuned["encoder"]
    return params


def run_analysis(run_dir: Path, tasks: Sequence[str], out_dir: Path, *, glue_dir=None, per_task: int = 64,
                 stem: str = "redundancy") -> dict[str, Any]:
    """The redundancy record of the runs ``run_dir/<TASK>`` (at least two distinct tasks), written to
    ``out_dir/<stem>.json`` and ``.png``. The pretrained model and the held-out split are the runs' own (their
    config.json; the runs must agree on both)."""
    from mgen_jax.io import check_name, prepare_output
    from mgen_jax.workfolder import read_state_json

    check_name(stem, "--stem")
    names = [get_task(t).name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"--tasks names a task twice: {names}")
    if len(names) < 2:
        raise ConfigError(f"the redundancy analysis compares task models: give at least two tasks, got {names}")
    for suffix in (".json", ".png"):  # before any model is loaded
        prepare_output(Path(out_dir) / f"{stem}{suffix}")
    records = {}
    for name in names:
        config = Path(run_dir) / name / "config.json"
        if config.is_file():  # probe the runs' own held-out split, with their own pretrained model
            run = read_state_json(config, ("config",))["config"]
            if not isinstance(run, dict):
                raise ConfigError(f"state file {config}: field 'config' is not a mapping")
            records[name] = (run.get("model", "minilm-l6"), (run.get("heldout_fraction"), run.get("heldout_max_rows"),
                                                             run.get("heldout_seed")))
    if len(set(records.values())) > 1:
        raise ConfigError(f"the runs in {run_dir} differ in their pretrained model or held-out split: "
                          f"{describe_value(records, 200)}")
    model, split = next(iter(records.values()), ("minilm-l6", (None, None, None)))
    heldout = HeldoutSpec(*split) if split[0] is not None else HeldoutSpec()
    record = analyze(load_task_encoders(run_dir, names), model=model, per_task=per_task, glue_dir=glue_dir,
                     heldout=heldout)
    write_json_atomic(Path(out_dir) / f"{stem}.json", record)
    plot_redundancy(record, Path(out_dir) / f"{stem}.png")
    return record
