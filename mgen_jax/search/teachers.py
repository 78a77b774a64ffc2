"""The distillation teachers: the independently fine-tuned models (``teacher_run``, default the reference independent
run), and their outputs on every training row, computed once per run folder and teacher folder (folder
``teachers/[<teacher run>/]``, one ``<task>.npy`` [N_t, max_labels] a task; the run folder's settings pin the
independent runs and the rows), so that distillation at equal budget costs no teacher forward pass per step."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.io import write_bytes_atomic
from mgen_jax.train.parallel import to_host


def teachers(gen) -> Any:
    """The independently fine-tuned models (``teacher_run``, default the reference run), whole (their own
    embeddings), as distillation teachers."""
    return gen.memo("teachers", lambda: gen.model.separate_params(*gen.task_models(gen.cfg.teacher_run)))


def teacher_outputs(gen) -> list[np.ndarray]:
    """Every task's teacher outputs [N_t, max_labels] on its training rows (``data.train[t]``), dropout off: read
    from the teacher folder, or computed there (holding its lock) for the tasks it lacks."""
    def compute():
        folder = gen.run.teachers(gen.cfg.teacher_run)
        with gen.run.phase_folder(folder, "teacher folder"):
            return _outputs_in(gen, folder)

    return gen.memo("teacher_outputs", compute)


def _outputs_in(gen, folder: Path) -> list[np.ndarray]:
    outputs, forward = [], None
    for t, task in enumerate(gen.tasks):
        path = folder / f"{task.name}.npy"
        shape = (len(gen.data.train[t]), gen.model.max_labels)
        if path.is_file():
            cached = np.load(path)
            if cached.shape == shape:
                outputs.append(cached)
                continue
        if forward is None:
            forward = jax.jit(gen.model.separate_task_forward)
            models = gen.replicate(teachers(gen))
            if gen.progress:
                print(f"teacher outputs on the training rows ({sum(len(x) for x in gen.data.train)} rows, once "
                      f"per work folder)", file=sys.stderr, flush=True)
        out = np.zeros(shape, np.float32)
        for idx, batch in gen.data.eval_batches(t, gen.eval_batch, "train"):
            batch = gen.shard({k: v for k, v in batch.items() if k != "labels"})
            out[idx] = to_host(forward(models, jnp.int32(t), batch))[: len(idx)]
        buffer = io.BytesIO()
        np.save(buffer, out)
        write_bytes_atomic(path, buffer.getvalue())
        outputs.append(out)
    return outputs
