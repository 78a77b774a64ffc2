"""A search run's folder: where each phase keeps its files, and which config fields each folder's results depend on.

```
<workdir>/
  settings.json                         the run settings: every config field that no phase declares (PhaseFields)
  warmup/                               the warm-up: params.msgpack, result.json and the loss profile
                                        (loss_profile_heldout.json, or loss_profile_<batches>.json without a held-out
                                        split)
  search_lambda_<lambda>/               one lambda search: result.json; settings.json holds its fields
  models/b_<b_1>-...-<b_T>[_seed<s>]/   one discrete model: params.msgpack, result.json, predictions.json,
                                        settings.json (the seed is named when it is not the config's)
  gradient/r<target>[_<tag>]_seed<s>/   one gradient-search run (search/gradient.py)
  teachers/[<teacher run>/]<task>.npy   the teachers' outputs on the training rows
  task_weights_heldout.json             the task weights calibrated on the held-out split
```

Numbers in folder names are written by ``number_tag`` (0.5 -> "0p5"). A phase's folder holds its ``result.json``
once it has finished; while a phase trains there it holds the folder's lock (``RunDir.phase_folder``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from mgen_jax.errors import ConfigError
from mgen_jax.io import LOCK_FILE, clean_partial_files, is_partial_file, read_json_file, write_json_atomic
from mgen_jax.workfolder import lock_work_folder

RESULT = "result.json"
SETTINGS = "settings.json"
CHECKPOINT = "checkpoint.msgpack"


def number_tag(x: float) -> str:
    """A number as it stands in a folder name: 0.5 -> "0p5", 20.0 -> "20".

    >>> number_tag(0.334), number_tag(4.0)
    ('0p334', '4')
    """
    return f"{x:g}".replace(".", "p")


@dataclasses.dataclass(frozen=True)
class PhaseFields:
    """The config fields that only one phase reads, declared beside that phase. ``folder`` names the kind of the
    phase's own folders ("search folder", "model folder", ...) when the phase checks these fields in each such
    folder's settings.json; None when they change no result that a folder holds (the sweep's lists of models, how
    often checkpoints are written), so that a run folder is kept whatever their values. Every field that no phase
    declares is a run setting, checked in the run folder's settings.json (``RunDir.check_run``)."""

    fields: tuple[str, ...]
    folder: str | None = None

    def settings(self, cfg) -> dict[str, Any]:
        """This phase's fields of ``cfg`` (a SearchConfig), in the config's order: what its folders record."""
        return {k: v for k, v in cfg.to_dict().items() if k in self.fields}


# Settings added after runs were recorded, and what a settings file that lacks them was made with: gradient runs drew
# the weights' branch point from q and scored branch points by their loss.
BEFORE_THE_FIELD = {"weight_sampling": "distribution", "objective": "loss"}


def config_defaults() -> dict[str, Any]:
    """What a settings file that lacks a field was made with: every SearchConfig field's default, as a settings
    file holds it (lists, not tuples), and BEFORE_THE_FIELD."""
    from mgen_jax.search.config import SearchConfig

    defaults = {f.name: f.default for f in dataclasses.fields(SearchConfig) if f.default is not dataclasses.MISSING}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()} | BEFORE_THE_FIELD


def run_settings(cfg, phases: Sequence[PhaseFields]) -> dict[str, Any]:
    """The run folder's settings: every field of ``cfg`` that none of ``phases`` declares; of ``independent_runs``
    only the reference run (the first folder: the one phases read; further seeds only join the reported means)."""
    declared = {field for phase in phases for field in phase.fields}
    settings = {k: v for k, v in cfg.to_dict().items() if k not in declared}
    settings["independent_runs"] = cfg.independent_dirs[0] if cfg.independent_dirs else None
    return settings


class RunDir:
    """The folder of one search run (``root``, the workdir) and its layout; ``seed`` is the config's training seed
    (a model folder names any other)."""

    def __init__(self, root: str | Path, *, seed: int):
        self.root = Path(root)
        self.seed = seed

    # ----- layout ----------------------------------------------------------------------------------------------
    @property
    def warmup(self) -> Path:
        return self.root / "warmup"

    def loss_profile(self, *, heldout: bool, batches: int) -> Path:
        """The warm-up's loss profile: on the held-out split, or on ``batches`` train batches without one."""
        return self.warmup / ("loss_profile_heldout.json" if heldout else f"loss_profile_{batches}.json")

    def search(self, lam: float) -> Path:
        return self.root / f"search_lambda_{number_tag(lam)}"

    def model(self, b: Sequence[int], seed: int | None = None) -> Path:
        """The discrete model of branch points ``b`` trained with ``seed`` (default: the config's)."""
        suffix = "" if seed is None or seed == self.seed else f"_seed{seed}"
        return self.root / "models" / ("b_" + "-".join(map(str, b)) + suffix)

    def gradient(self, target: float, seed: int, tag: str = "") -> Path:
        """One gradient-search run at energy target ``target`` (a ``tag`` names overridden settings)."""
        return self.root / "gradient" / (f"r{number_tag(target)}" + (f"_{tag}" if tag else "") + f"_seed{seed}")

    def teachers(self, teacher_run: str | None) -> Path:
        """The teachers' outputs of the reference independent run, or of the folder ``teacher_run``."""
        folder = self.root / "teachers"
        if teacher_run is None:
            return folder
        return folder / re.sub(r"[^A-Za-z0-9_.-]+", "_", teacher_run.strip("/"))

    @property
    def task_weights(self) -> Path:
        return self.root / "task_weights_heldout.json"

    # ----- results ---------------------------------------------------------------------------------------------
    @staticmethod
    def finished(folder: Path) -> bool:
        """Has the phase of ``folder`` written its result?"""
        return (folder / RESULT).exists()

    @staticmethod
    def result(folder: Path, required: Sequence[str] = ()) -> dict[str, Any]:
        """The result a finished phase wrote in ``folder``; ConfigError naming the file if it is not a JSON object
        with the ``required`` fields (a corrupt or foreign file is never taken for a phase's result)."""
        result = read_json_file(folder / RESULT, "phase result")
        missing = [k for k in required if k not in result]
        if missing:
            raise ConfigError(f"phase result {folder / RESULT} lacks field(s) {missing}: not a result this version "
                              "wrote; move the folder away to run the phase again")
        return result

    @staticmethod
    def drop_checkpoint(folder: Path) -> None:
        """Delete a finished phase's resume checkpoint (its result is written; only a rerun of the phase needs it)."""
        (folder / CHECKPOINT).unlink(missing_ok=True)

    # ----- settings and locks ----------------------------------------------------------------------------------
    def check_run(self, cfg, phases: Sequence[PhaseFields]) -> None:
        """Record the run settings (``run_settings``) in settings.json, or refuse a run folder made with others (or
        a --workdir that is no folder)."""
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"workdir {self.root} is a file, not a folder")
        _check_settings(self.root / SETTINGS, run_settings(cfg, phases), "workdir")

    def check_phase(self, folder: Path, settings: dict[str, Any], what: str) -> None:
        """Record a phase folder's settings (the fields its phase declares), or refuse one made with others; a
        folder with files but no settings.json predates recorded settings and is refused too."""
        path = folder / SETTINGS
        ours = lambda p: p.name == LOCK_FILE or is_partial_file(p)  # a kill while settings.json was first written
        if folder.is_dir() and any(not ours(p) for p in folder.iterdir()) and not path.exists():
            raise ConfigError(f"{what} {folder} has no settings.json (it predates recorded {what} settings): "
                              "move it away to run it again")
        _check_settings(path, settings, what)

    @staticmethod
    @contextlib.contextmanager
    def phase_folder(folder: Path, what: str) -> Iterator[None]:
        """Hold ``folder``'s lock while a phase trains and writes there (another process gets a ConfigError naming
        the folder; processes may share a run folder, each on its own phases), after deleting what a kill during an
        atomic write left in it (only the tool's own temporary names, io.clean_partial_files)."""
        with lock_work_folder(folder, what):
            clean_partial_files(folder)
            yield


def _check_settings(path: Path, settings: dict[str, Any], what: str) -> None:
    """Write ``settings`` to ``path``, or refuse if the file holds other values (cached phases would be silently
    reused). A field added to SearchConfig after the run started counts as its default value."""
    if path.exists():
        saved = read_json_file(path, "run settings")
        defaults = config_defaults()
        changed = sorted(k for k in set(saved) | set(settings)
                         if saved.get(k, defaults.get(k)) != settings.get(k, defaults.get(k)))
        if changed:
            raise ConfigError(f"{what} {path.parent} holds a run with other settings ({changed}); "
                              "use another --workdir, move that folder away, or restore those values")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, settings)
