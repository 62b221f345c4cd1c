r"""The attacks of benchmarks/results/lfw_attacks.md on a run trained on the LFW photos: decoders,
their re-identification, accounts and repeated uploads, at the untransformed noiseless setting and
at the deployed PCA-32 + noise.

  python eval.py --workdir RUN --config configs/eval/lfw_attacks.py
  python benchmarks/lfw_attack_table.py RUN ... --out benchmarks/results/lfw_attacks.md

Settings (transform / noise variance): none/0 (the baseline), pca:32/0.03 and pca:32/0.1 (the
deployed transform), plus none/0.03 and none/0.1, which the grid of transforms x variances brings
and where only the cloud head runs. At none/0 and pca:32/0.1: the decoders (`mse`, the paper's loss;
`l1_ssim_aug`, the default), each trained on that setting's uploads of the attacker's own photos,
the mean image beside them, and their re-identification by a linear pixel classifier and by dlib's
face recogniser (on 256 attacker-test rows against 2 gallery photos a person, the fast
evaluation's sizes: dlib takes a few tenths of a CPU-second a photo); accounts pooling k = 1, 2, 4,
8 uploads of one person (linear). At pca:32/0.03 and pca:32/0.1: the same photo uploaded k = 1, 2, 4,
8 times (linear on the mean of the k uploads).
"""

import ml_collections

from privjax import config_args

WHERE = ('none/0', 'pca:32/0.1')


def _at(section, where: tuple) -> ml_collections.ConfigDict:
  """`section` with `where` a tuple of setting names (its default is a word, and a ConfigDict
  keeps a field's first type)."""
  return ml_collections.ConfigDict({**section.to_dict(), 'where': where})


def get_config(arg: str = ''):
  c = config_args.parent(__file__, 'default.py').get_config(arg)  # it checks `arg`
  c.name = 'lfw_attacks'
  c.transforms = ('none', 'pca:32')
  c.noise_variances = (0.0, 0.03, 0.1)
  c.evaluators = ('head', 'reconstruction', 'reidentify', 'accounts', 'repeated_upload')
  c.reconstruction = _at(c.reconstruction, WHERE)
  c.reconstruction.methods = ('mse', 'l1_ssim_aug')
  c.reidentify = _at(c.reidentify, WHERE)
  c.reidentify.face_probes = 256
  c.reidentify.face_gallery = 2
  c.accounts = _at(c.accounts, WHERE)
  c.accounts.ks = (1, 2, 4, 8)
  c.repeated_upload = _at(c.repeated_upload, ('pca:32/0.03', 'pca:32/0.1'))
  c.repeated_upload.ks = (1, 2, 4, 8)
  return c
