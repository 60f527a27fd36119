#!/usr/bin/env bash
# The seed report's study, reproduced with adder search (grid sampler, 3 seeds each, no early
# stop), then docs/seed-study.md. Usage: bash scripts/seed_study.sh [RESULTS]  (make seed-study)
set -euo pipefail
results=${1:-results/seed-study}
bin=${BIN:-.venv/bin}
start=$(date +%s)
for space in spaces/seed/*.yaml; do
  name=$($bin/python -c "from search.space import load_space; print(load_space('$space').name)")
  if [ -f "$results/$name/leaderboard.json" ]; then
    echo "seed study: $name already done" >&2
  elif [ -d "$results/$name/tune" ]; then
    $bin/adder search "$space" --results "$results" --wandb disabled --resume > /dev/null
  else
    $bin/adder search "$space" --results "$results" --wandb disabled > /dev/null
  fi
done
end=$(date +%s)
echo "seed study: searches took $((end - start)) s" >&2
$bin/python scripts/seed_study.py "$results" --seconds $((end - start))
