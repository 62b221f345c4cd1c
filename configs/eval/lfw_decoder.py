r"""The deeper reconstruction decoder on a run trained on the LFW photos, and its re-identification:
the rows of benchmarks/results/lfw_decoder.md.

  python eval.py --workdir RUN --config configs/eval/lfw_decoder.py
  python benchmarks/lfw_attack_table.py RUN ... --name lfw_decoder --out benchmarks/results/lfw_decoder.md

At none/0 (noiseless, untransformed) and pca:32/0.1 (the deployed PCA-32 + noise): the decoder of
the full configuration (width 256, one residual block a stage, `l1_ssim_aug`, 1000 steps), trained
on that setting's uploads of the attacker's own photos, with the attacker's mean image beside it;
its images re-identified by a linear pixel classifier and by dlib's face recogniser (256
attacker-test rows against 2 gallery photos a person, as in configs/eval/lfw_attacks.py); the cloud
head at every setting. About 25 minutes a setting on the 2-core machine.
"""

from privjax import config_args

WHERE = ('none/0', 'pca:32/0.1')


def get_config(arg: str = ''):
  parent = config_args.parent(__file__, 'lfw_attacks.py')
  c = parent.get_config(arg)  # it checks `arg`
  c.name = 'lfw_decoder'
  c.noise_variances = (0.0, 0.1)
  c.evaluators = ('head', 'reconstruction', 'reidentify')
  c.reconstruction = parent._at(c.reconstruction, WHERE)
  c.reconstruction.methods = ('l1_ssim_aug',)
  c.reconstruction.width = 256
  c.reconstruction.blocks = 1
  c.reidentify = parent._at(c.reidentify, WHERE)
  return c
