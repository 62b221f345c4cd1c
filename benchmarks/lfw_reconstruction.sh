#!/usr/bin/env bash
# Reconstruction, re-identification and open-set identity on the LFW photos:
# `none` and the quick frontier's best defence, `siamese` at weight 1 (training seed 0, the runs of
# `python -m privjax frontier --config configs/lfw_photos.py:csv=CSV --workdir
# runs/frontier_lfw_quick --quick`), each evaluated twice with the fast evaluation's settings:
#   recon_lfw_deployed  at the deployed setting, PCA-32 + noise variance 0.1: open-set identity
#       (also at none / PCA-32 and noise 0 / 0.1), the learned decoder on the noiseless cut
#       features (`reconstruction`) and on the uploads of the deployed setting
#       (benchmarks/deployed_decoder.py), rMLE through the deployed extractor (32 images x 200
#       steps, TV weight 1e-2: fast's), re-identification of every reconstruction;
#   recon_lfw_clean     untransformed and noiseless, where the decoder is trained: rMLE on the same
#       32 attacker-test images x 200 steps (TV weight 1e-2), re-identification. The decoder is not
#       trained again: recon_lfw_deployed's (same seed, same noiseless features) is on these images.
# rMLE runs on 32 images only (fast's size; the full evaluation's is 128) because of the CPU time
# this machine had; its re-identification top-1 has a standard error of several points.
# The closed-set attackers are not re-run: the strongest identity top-1 at these settings is in the
# runs' target_full / target evaluations (benchmarks/lfw_target_seeds.sh). The runs' configs name
# the photos' CSV. From the repository root:
#   bash benchmarks/lfw_reconstruction.sh      (a rerun skips finished evaluations; RUNS="none" and
#       EVALS="recon_lfw_clean" pick a part, e.g. to run two parts side by side)
#   python -m benchmarks.lfw_reconstruction runs/frontier_lfw_quick \
#       --out benchmarks/results/lfw_reconstruction.md
set -euo pipefail
dir=runs/frontier_lfw_quick
common=(--config configs/eval/default.py:fast --config.inversion.steps=200
        --config.inversion.tv_weights='()' --config.inversion.tv_weight=0.01)
runs=${RUNS:-none siamese_1}
evals=${EVALS:-recon_lfw_deployed recon_lfw_clean}
for run in $runs; do
  [[ " $evals " != *" recon_lfw_deployed "* ]] ||
  compgen -G "$dir/$run/eval/recon_lfw_deployed/step_*/report.json" >/dev/null || python eval.py --workdir $dir/$run \
      "${common[@]}" --config.name=recon_lfw_deployed \
      --config.transforms='("none","pca:32")' --config.noise_variances='(0.0,0.1)' \
      --config.evaluators='("head","open_set","benchmarks.deployed_decoder","reconstruction","inversion","reidentify")' \
      --config.open_set.settings=each --config.inversion.num_images=32 \
      --config.inversion.transform=pca:32 --config.inversion.noise_variance=0.1
  [[ " $evals " != *" recon_lfw_clean "* ]] ||
  compgen -G "$dir/$run/eval/recon_lfw_clean/step_*/report.json" >/dev/null || python eval.py --workdir $dir/$run \
      "${common[@]}" --config.name=recon_lfw_clean \
      --config.transforms='("none",)' --config.noise_variances='(0.0,)' \
      --config.evaluators='("head","inversion","reidentify")' \
      --config.inversion.num_images=32 \
      --config.inversion.transform=none --config.inversion.noise_variance=0.0
done
