#!/usr/bin/env bash
# The whole pipeline on the shipped configs, resumable: re-run it after an interruption and finished stages are kept.
#   1. independent baselines (8 GLUE tasks)       ~2.3 h here   runs/baseline/<TASK>/
#   2. baseline table + redundancy analysis         ~3 min       experiments/results/baseline_independent.json, redundancy_glue5.*
#   3. model generator sweep, 5 tasks (task         ~5 h         experiments/results/search_glue5.*
#      weights in the config: experiments/calibrate_task_weights.py on this sweep's b = 0 and b = U models)
#   3b. the same without task weights or budgets,   ~2 h         experiments/results/search_glue5_unweighted.*
#       reusing 3's warm-up and baselines
#   4. model generator sweep, 8 tasks               ~2 h         experiments/results/search_glue8.* (its best model is
#                                                                 the "searched" model of step 5)
#   5. scheduler experiment (8 tasks, 2 chips)      ~2 min       experiments/results/schedule.*
set -euo pipefail
cd "$(dirname "$0")/.."
MGEN=.venv/bin/mgen
for cfg in sst2:SST-2 cola:CoLA mrpc:MRPC stsb:STS-B rte:RTE qnli:QNLI mnli:MNLI qqp:QQP; do
  name=${cfg##*:}
  if [ ! -f "runs/baseline/$name/summary.json" ]; then
    $MGEN finetune --config "configs/finetune/${cfg%%:*}.yaml" --workdir "runs/baseline/$name"
  fi
done
.venv/bin/python experiments/collect_baseline.py
$MGEN analyze --runs runs/baseline --tasks SST-2,CoLA,MRPC,STS-B,RTE --out experiments/results --stem redundancy_glue5
$MGEN sweep --config configs/search/glue5.yaml
if [ ! -d runs/search/glue5_unweighted ]; then
  mkdir -p runs/search/glue5_unweighted
  cp -al runs/search/glue5/warmup runs/search/glue5/models runs/search/glue5_unweighted/
fi
$MGEN sweep --config configs/search/glue5_unweighted.yaml
$MGEN sweep --config configs/search/glue8.yaml
.venv/bin/python experiments/schedule_experiment.py
