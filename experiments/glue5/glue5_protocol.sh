#!/usr/bin/env bash
# The glue5 equal-budget experiment end to end, resumable across sessions and machines:
#   restore the committed run records -> independent models, seeds 0, 1 and 2 (table: baseline_glue5.json) ->
#   redundancy analysis of seed 0
#   (held-out probe) -> the teacher-annealing trial on the 3x tree (configs/search/glue5_bam3x.yaml) -> the
#   equal-budget sweep (configs/search/glue5.yaml; its record holds the 3-seed means) ->
#   results into experiments/results/. The independent runs come first: each task is a phase of ~8 minutes, so an
#   interrupted session loses little (a sweep model is one ~40-minute phase).
# Every finished phase's JSON files are saved to experiments/run_records/ every 10 minutes and after each stage
# (experiments/run_records.py), so a later session restores them and trains only what is missing: commit them
# before a session ends. About 12 hours on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
MGEN=${MGEN:-.venv/bin/mgen}  # or a frozen copy of the code: "env PYTHONPATH=<copy> .venv/bin/python -P -m mgen_jax.cli"
# (with a copy outside the checkout, set MGEN_GLUE_DIR: the default GLUE folder is found beside the package)
export MGEN
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-runs/jax_cache}
$PY experiments/run_records.py restore
( while sleep 600; do $PY experiments/run_records.py save > /dev/null; done ) &
SAVER=$!
# on exit (done, failed or stopped with kill) also the sweep's record so far: search_glue5.{json,png} with the models still
# to train listed as pending (nothing is trained; skipped before the sweep's warm-up has finished)
trap 'kill $SAVER 2>/dev/null; $PY experiments/run_records.py save
      $MGEN sweep --config configs/search/glue5.yaml --out experiments/results --report-only --no-progress \
        > /dev/null 2>&1 || true' EXIT
experiments/glue5/run_independent.sh 0 1 2
$PY experiments/run_records.py save
# the three held-out-protocol seeds; baseline_independent.json keeps the earlier runs (recipe study, glue8)
$PY experiments/glue5/collect_baseline.py --runs runs/baseline runs/baseline_seed1 runs/baseline_seed2 \
  --out experiments/results/baseline_glue5.json
if [ ! -f experiments/run_records/analysis_glue5.done ]; then
  $MGEN analyze --runs runs/baseline --tasks SST-2,CoLA,MRPC,STS-B,RTE --out experiments/results --stem redundancy_glue5
  mkdir -p experiments/run_records && echo "redundancy_glue5.json from runs/baseline (seed 0)" \
    > experiments/run_records/analysis_glue5.done
fi
$PY experiments/run_records.py save
# the teacher-annealing trial on the 3x tree (configs/search/glue5_bam3x.yaml: ~50 min, 100 more if it makes a claim)
$MGEN sweep --config configs/search/glue5_bam3x.yaml --out experiments/results
$PY experiments/run_records.py save
$MGEN sweep --config configs/search/glue5.yaml --out experiments/results
echo "glue5 protocol: done"
