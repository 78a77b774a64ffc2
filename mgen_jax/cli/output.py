"""How ``mgen`` prints: results on stdout (a table, or one JSON object with --json), logs and "wrote <path>" lines
on stderr, in every command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence


def print_json(result: Any) -> None:
    """The result as one JSON object on stdout."""
    print(json.dumps(result, indent=2))


def log(line: str) -> None:
    """A progress or log line: stderr, flushed (stdout carries results only)."""
    print(line, file=sys.stderr, flush=True)


def wrote(*paths: str | Path) -> None:
    """The "wrote <path> and <path>" line of a command that writes files: stderr, in every command."""
    log("wrote " + " and ".join(str(p) for p in paths))


def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(title)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def fmt_j(x: float) -> str:
    """Joules with a unit that keeps 4 decimals readable (mJ, uJ, nJ, pJ)."""
    for unit, scale in (("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(x) >= scale:
            return f"{x / scale:10.4f} {unit}"
    return f"{x:10.4g} J"


def print_energy(result: dict[str, Any], title: str) -> None:
    """A simulator or cost-model summary as a table: energy per request by component, crossbars, area, latency."""
    total = result["energy_per_request_j"]
    rows = [
        ("hardware / model", f"{result['hw']} / {result['model']}"),
        ("tasks", ", ".join(result["tasks"])),
        ("branch points", ",".join(map(str, result["branch_points"]))),
        ("workload", result["workload"]),
        ("energy per request", fmt_j(total)),
    ]
    rows += [(f"  {k}", f"{fmt_j(v)}  {100 * v / total:5.1f} %") for k, v in result["breakdown_per_request_j"].items()
             if v]
    rows += [
        ("crossbars", f"{result['crossbars']:,} of {result['chip_crossbars']:,} on one chip"),
        ("area", f"{result['area_mm2']:.2f} mm^2 ({result['tiles']} tiles)"),
        ("latency per request", f"{result['latency_per_request_s'] * 1e6:.1f} us (estimate)"),
    ]
    print_table(title, rows)


def emit_energy(result: dict[str, Any], as_json: bool, title: str) -> None:
    """A simulator or cost-model summary as JSON or as a table; ConfigError if a number in it is not finite."""
    from mgen_jax.io import check_finite

    check_finite(result, "result")
    if as_json:
        print_json(result)
    else:
        print_energy(result, title)
