#!/usr/bin/env bash
# The LFW target check over training seeds: `none` and the quick frontier's best defence, `siamese`
# (weight 1), trained with seeds 0, 1, 2 (seed 0 is the quick frontier's runs), each evaluated with
# the full evaluation's attackers (every family, every PCA candidate of pca_linear and pca_mlp) at
# the settings the target is about: no transform and PCA-32, noise 0, 0.03 and 0.1 (gender, the
# primary task, is attacked only untransformed and noiseless; the probe measures it elsewhere).
#   bash benchmarks/lfw_target_seeds.sh CSV   →   runs/lfw_seeds/, then
#   python -m benchmarks.seed_table --name target_full,target runs/frontier_lfw_quick \
#       runs/lfw_seeds/seed1 runs/lfw_seeds/seed2 --runs none,siamese_1 \
#       --out benchmarks/results/lfw_target_seeds.md
# Each run gets both the full evaluation (`target_full`) and the fast one (`target`: pca_linear at
# PCA-512 only); the table takes the strongest attacker over both, since a size chosen on the
# attacker's val split can do worse on its test split than a fixed one.
# A rerun skips finished training runs and evaluations.
set -euo pipefail
csv=${1:?usage: lfw_target_seeds.sh PATH/TO/labels.csv}
config="configs/lfw_photos.py:csv=$csv"
settings=(--config.transforms='("none","pca:32")' --config.noise_variances='(0.0,0.03,0.1)'
          --config.evaluators='("head","attackers")' --config.attackers.primary_sweep=False)
for seed in 0 1 2; do
  dir=runs/lfw_seeds/seed$seed
  if [ "$seed" = 0 ]; then dir=runs/frontier_lfw_quick; else
    [ -f $dir/none/final_metrics.json ] ||
      python train.py --config "$config" --config.seed=$seed --config.progress=False --workdir $dir/none
    [ -f $dir/siamese_1/final_metrics.json ] ||
      python train.py --config "configs/lfw_photos.py:siamese,csv=$csv" --config.seed=$seed \
        --config.defence.siamese.weight=1.0 --config.progress=False --config.init_from=$dir/none \
        --workdir $dir/siamese_1
  fi
  for run in none siamese_1; do
    compgen -G "$dir/$run/eval/target_full/step_*/report.json" >/dev/null || python eval.py --workdir $dir/$run \
        --config configs/eval/default.py --config.name=target_full "${settings[@]}"
    compgen -G "$dir/$run/eval/target/step_*/report.json" >/dev/null || python eval.py --workdir $dir/$run \
        --config configs/eval/default.py:fast --config.name=target "${settings[@]}"
  done
done
