#!/usr/bin/env bash
# The LFW target check over training seeds: `none` and the quick frontier's best defence, `siamese`
# (weight 1), trained with seeds 0, 1, 2 (seed 0 is the quick frontier's runs), each evaluated with
# every attacker family of the fast evaluation at the settings the target is about: no transform and
# PCA-32, noise 0, 0.03 and 0.1.
#   bash benchmarks/lfw_target_seeds.sh CSV   →   runs/lfw_seeds/, then benchmarks/seed_table.py
set -euo pipefail
csv=${1:?usage: lfw_target_seeds.sh PATH/TO/labels.csv}
config="configs/lfw_photos.py:csv=$csv"
target=(--config configs/eval/default.py:fast --config.name=target --config.transforms='("none","pca:32")'
        --config.noise_variances='(0.0,0.03,0.1)' --config.reconstruction.enabled=False --config.rank_privacy=False)
for seed in 0 1 2; do
  dir=runs/lfw_seeds/seed$seed
  if [ "$seed" = 0 ]; then dir=runs/frontier_lfw_quick; else
    python train.py --config "$config" --config.seed=$seed --config.progress=False --workdir $dir/none
    python train.py --config "configs/lfw_photos.py:siamese,csv=$csv" --config.seed=$seed \
        --config.defence.siamese.weight=1.0 --config.progress=False --config.init_from=$dir/none \
        --workdir $dir/siamese_1
  fi
  for run in none siamese_1; do
    python eval.py --workdir $dir/$run "${target[@]}"
  done
done
