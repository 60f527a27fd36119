#!/usr/bin/env bash
# The README's "What it learns" figures: the seed's setting for each cell, then the hard case.
# Usage: bash scripts/core_figures.sh [OUT]   (about 3 minutes on 2 cores)
set -euo pipefail
out=${1:-runs/core}
adder=${ADDER:-.venv/bin/adder}
for cell in rnn lstm gru; do
  $adder train --cell $cell --hidden 32 --layers 2 --lr 0.001 --batch-size 128 --steps 2000 \
    --train-digits 10 --test-digits 100 --eval-size 1000 --wandb disabled --out $out/$cell | tail -1
  $adder eval $out/$cell/checkpoint.pt --digits 1000 --n 1000 | tail -1
done
# The seed's hard case: trained on operands < 10^2 only, scored on operands < 10^10 (1000 steps).
for cell in rnn lstm gru; do
  for seed in 0 1 2; do
    $adder train --cell $cell --train-digits 2 --test-digits 10 --steps 1000 --seed $seed \
      --wandb disabled --out $out/hard-$cell-$seed | tail -1
  done
done
