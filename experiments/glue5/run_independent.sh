#!/usr/bin/env bash
# The independent glue5 models (one fine-tuned all-MiniLM-L6-v2 per task), for the given training seeds:
#   experiments/glue5/run_independent.sh 0 1 2   -> runs/baseline/<TASK> (seed 0), runs/baseline_seed<S>/<TASK> (S > 0)
# Every seed trains on the same rows (train minus the held-out split, the same cap: data_seed 0); only the head's
# initialisation, the batch order and dropout change. Resumable: a finished run (summary.json) is skipped, an
# interrupted one resumes from its checkpoint. About 40 minutes per seed here (2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
MGEN=${MGEN:-.venv/bin/mgen}
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-runs/jax_cache}  # the 16 bucket shapes, compiled once
for seed in "${@:-0}"; do
  root=runs/baseline; [ "$seed" = 0 ] || root=runs/baseline_seed$seed
  for cfg in sst2:SST-2 cola:CoLA mrpc:MRPC stsb:STS-B rte:RTE; do
    name=${cfg##*:}
    if [ ! -f "$root/$name/summary.json" ]; then
      $MGEN finetune --config "configs/finetune/${cfg%%:*}.yaml" --workdir "$root/$name" --seed "$seed" --no-progress
    fi
  done
done
