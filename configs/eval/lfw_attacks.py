r"""The attacks of benchmarks/results/lfw_attacks.md on a run trained on the LFW photos: decoders,
rMLE from their output, their re-identification, accounts and repeated uploads, at the
untransformed noiseless setting and at the deployed PCA-32 + noise.

  python eval.py --workdir RUN --config configs/eval/lfw_attacks.py
  python benchmarks/lfw_attack_table.py RUN ... --out benchmarks/results/lfw_attacks.md

Settings (transform / noise variance): none/0 (the baseline), pca:32/0.03 and pca:32/0.1 (the
deployed transform), plus none/0.03 and none/0.1, which the grid of transforms x variances brings
and where only the cloud head runs. At none/0 and pca:32/0.1: the decoders (`l1_ssim_aug`, the
default; `mse`, the paper's loss), each trained on that setting's uploads of the attacker's own
photos, with the mean image beside them; rMLE started from the first decoder's images, on 128 of
them (300 steps, its TV weight tuned on 16 of the attacker's own photos); their re-identification
by a linear pixel classifier and by dlib's face recogniser (on 256 attacker-test rows against 2
gallery photos a person: dlib takes a few tenths of a CPU-second a photo); accounts pooling k = 1,
2, 4, 8 uploads of one person (linear). At pca:32/0.03 and pca:32/0.1: the same photo uploaded
k = 1, 2, 4, 8 times (linear on the mean of the k uploads).
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
  c.evaluators = (
      'head',
      'reconstruction',
      'inversion',
      'reidentify',
      'accounts',
      'repeated_upload',
  )
  c.reconstruction = _at(c.reconstruction, WHERE)
  c.reconstruction.methods = ('l1_ssim_aug', 'mse')
  # The small decoder, which this table was measured with (configs/eval/lfw_decoder.py runs the
  # deeper one).
  c.reconstruction.width = 64
  c.reconstruction.blocks = 0
  c.inversion = _at(c.inversion, WHERE)
  c.inversion.init = 'decoder'
  c.reidentify = _at(c.reidentify, WHERE)
  c.reidentify.face_probes = 256
  c.reidentify.face_gallery = 2
  c.accounts = _at(c.accounts, WHERE)
  c.accounts.ks = (1, 2, 4, 8)
  c.repeated_upload = _at(c.repeated_upload, ('pca:32/0.03', 'pca:32/0.1'))
  c.repeated_upload.ks = (1, 2, 4, 8)
  return c
