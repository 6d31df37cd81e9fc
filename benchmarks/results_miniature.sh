#!/usr/bin/env bash
# The talk's claims in miniature (docs/results.md): every `trickbag ablate` command of that page, in
# order, on the embedded data. Rerunning skips what is done (each ablation resumes), then rewrites
# the tables and plots; copy them next to the doc with --publish.
#   bash benchmarks/results_miniature.sh [--publish]
# Run from the repository root. One thread per run unless you export OMP_NUM_THREADS yourself.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
OUT=runs/results
S=3

trickbag ablate docs/results/recipes/mini-adamw.toml --seeds $S --out $OUT/adamw \
  --vary tricks.decoupled_weight_decay.mode=l2,decoupled \
  --vary optimizer.lr=0.0003,0.001,0.003,0.01 \
  --vary optimizer.weight_decay=0.0,0.025,0.1,0.4
trickbag ablate quickstart-plain --seeds $S --out $OUT/super-convergence \
  --vary tricks.one_cycle.enabled=false,true --vary training.epochs=8,2
trickbag ablate docs/results/recipes/mini-large-batch.toml --seeds $S --out $OUT/large-batch \
  --vary training.batch_size=32,256 --vary tricks.warmup.enabled=false,true
trickbag ablate docs/results/recipes/mini-large-batch.toml --seeds $S --out $OUT/large-batch-constant-warmup \
  --vary training.batch_size=256 --set 'tricks.warmup.mode="constant"'
trickbag ablate docs/results/recipes/mini-schedules.toml --mode each --seeds $S --out $OUT/schedules
trickbag ablate docs/results/recipes/mini-noise.toml --seeds $S --out $OUT/noise \
  --vary tricks.step_decay.enabled=true,false --vary tricks.batch_size_schedule.enabled=false,true
# the distillation teacher of the last row: the same ResNet-20, 8 epochs, cosine
[ -f $OUT/teacher/checkpoint.pt ] || trickbag run quickstart-plain --out $OUT/teacher \
  --set 'model.name="resnet20"' --set tricks.cosine.enabled=true --set training.epochs=8
trickbag ablate docs/results/recipes/mini-bag-of-tricks.toml --mode cumulative --seeds $S --out $OUT/bag-of-tricks
# the same chain without zero-gamma, which stalls a 3-epoch ResNet-20 (its first four variants are
# the runs above: same recipe, same seeds)
trickbag ablate docs/results/recipes/mini-bag-of-tricks.toml --mode cumulative --seeds $S --out $OUT/bag-of-tricks-without-zero-gamma \
  --set tricks.zero_gamma.enabled=false

if [ "${1:-}" = "--publish" ]; then
  for row in adamw super-convergence large-batch large-batch-constant-warmup schedules noise bag-of-tricks bag-of-tricks-without-zero-gamma; do
    mkdir -p docs/results/$row
    cp $OUT/$row/table.md $OUT/$row/ablation.jsonl docs/results/$row/
    [ -f $OUT/$row/ablation.png ] && cp $OUT/$row/ablation.png docs/results/$row/
  done
fi
