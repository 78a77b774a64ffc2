"""Energy-breakdown report: independent vs fully shared models on real GLUE dev lengths (exact simulator), checked
against the cost model, written as JSON and drawn as a stacked bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mgen_jax import cost, hw
from mgen_jax.data.glue import get_task
from mgen_jax.errors import ConfigError
from mgen_jax.io import check_finite, check_name, prepare_output, save_figure_atomic, write_json_atomic
from mgen_jax.sim import simulate
from mgen_jax.workload.glue import glue_trace


def breakdown_rows(
    spec: hw.HardwareSpec, arch: hw.BertArch, trace, num_labels: Sequence[int], configs: dict[str, list[int]]
) -> dict[str, Any]:
    """Simulate each named branch-point configuration on ``trace``; add the cost model's value beside it."""
    tables = cost.build_tables(spec, arch, num_labels)
    workload = cost.workload_from_trace(trace)
    rows = {}
    for label, b in configs.items():
        result = simulate(spec, arch, hw.SharingTree.from_branch_points(b, arch.num_units), trace, num_labels=num_labels)
        summary = result.summary()
        estimate = cost.expected_energy(cost.onehot_probs(b, arch.num_units), tables, workload)
        rows[label] = {
            "branch_points": b,
            "energy_per_request_j": summary["energy_per_request_j"],
            "breakdown_per_request_j": summary["breakdown_per_request_j"],
            "energy_by_part_per_request_j": summary["energy_by_part_per_request_j"],
            "cost_model_energy_per_request_j": float(estimate.total_j),
            "crossbars": summary["crossbars"],
            "tiles": summary["tiles"],
            "area_mm2": summary["area_mm2"],
            "fits_on_chip": summary["fits_on_chip"],
            "latency_per_request_s": summary["latency_per_request_s"],
        }
    return rows


def plot_breakdown(rows: dict[str, Any], title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(rows)
    components = [c for c in hw.COMPONENTS if any(rows[l]["breakdown_per_request_j"][c] > 0 for l in labels)]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    bottom = np.zeros(len(labels))
    colors = plt.get_cmap("tab10").colors
    for i, c in enumerate(components):
        values = np.array([rows[l]["breakdown_per_request_j"][c] * 1e6 for l in labels])
        ax.bar(labels, values, bottom=bottom, label=c, color=colors[i % len(colors)], width=0.55)
        bottom += values
    for x, total in enumerate(bottom):
        ax.text(x, total, f"{total:.0f} uJ", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("energy per request (uJ)")
    ax.set_title(title, fontsize=10)
    ax.legend(title="component", fontsize=8, loc="upper right")
    ax.set_ylim(0, bottom.max() * 1.15)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return path


def breakdown_report(
    *, tasks: Sequence[str], hw_name: str = "isaac", model: str = "minilm-l6", out_dir: Path,
    glue_dir: str | None = None, max_length: int = 128,
) -> dict[str, Any]:
    spec, arch = hw.load_spec(hw_name), hw.load_arch(model)
    names = [get_task(t).name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"--tasks names a task twice: {names}")
    if max_length > arch.max_position:
        raise ConfigError(f"--max-length {max_length:,} exceeds the {arch.max_position:,} positions of model "
                          f"{arch.name!r}")
    stem = check_name(f"breakdown_{spec.name}_{arch.name}_{len(names)}tasks", "report file name")
    for suffix in (".json", ".png"):  # before the simulation
        prepare_output(out_dir / f"{stem}{suffix}")
    labels = [get_task(t).num_labels for t in names]
    trace = glue_trace(names, glue_dir=glue_dir, max_length=max_length)
    u = arch.num_units
    rows = breakdown_rows(spec, arch, trace, labels, {"independent": [0] * len(names), "fully shared": [u] * len(names)})
    ratio = rows["independent"]["energy_per_request_j"] / rows["fully shared"]["energy_per_request_j"]
    record = {
        "hw": spec.name, "model": arch.name, "tasks": names, "workload": trace.description,
        "requests": trace.num_requests, "mean_tokens": float(trace.tokens.mean()),
        "mean_tokens_sq": float((trace.tokens.astype(float) ** 2).mean()),
        "models": rows, "energy_ratio_independent_over_shared": ratio,
    }
    check_finite(record, "report")
    json_path = write_json_atomic(out_dir / f"{stem}.json", record)
    png_path = plot_breakdown(
        rows, f"{arch.name} on {spec.name}, {len(names)} GLUE tasks, real dev lengths (mean {trace.tokens.mean():.1f})",
        out_dir / f"{stem}.png",
    )
    lines = [f"{'component':<12}" + "".join(f"{l:>16}" for l in rows)]
    for c in hw.COMPONENTS:
        values = [rows[l]["breakdown_per_request_j"][c] for l in rows]
        if any(values):
            lines.append(f"{c:<12}" + "".join(f"{v * 1e6:13.2f} uJ" for v in values))
    lines.append(f"{'total':<12}" + "".join(f"{rows[l]['energy_per_request_j'] * 1e6:13.2f} uJ" for l in rows))
    lines.append(f"{'crossbars':<12}" + "".join(f"{rows[l]['crossbars']:16,}" for l in rows))
    lines.append(f"independent / fully shared = {ratio:.3f}x energy per request ({trace.num_requests} requests)")
    return {"json": json_path, "png": png_path, "table": "\n".join(lines), "record": record}
