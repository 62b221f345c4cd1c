r"""The paper's privacy evaluation: `python eval.py --workdir RUN --config configs/paper/eval.py`.

configs/eval/default.py with the feature transforms and noise levels of the authors' code
(github.com/aliosia/DeepPrivInf2017, privacy_codes/siamese_privacy.py): a 4-component PCA of the
cut features fitted on training features (`num_pca = 4`; also the 4-output `pca` layer of
layers/*/test_pca_lfw.prototxt), Gaussian noise of variance
`noises = [.0001, .01, .1, .25, .5, .8, 1, 2, 4, 9]` added to the PCA projections, then the head
on the reconstruction; their rank privacy is privjax's `rank_privacy`. Untransformed features
(`none`) and no noise (0) are kept as the reference points.

Arguments after the colon: those of configs/eval/default.py (fast, tiny); they keep its shorter
noise lists.
"""

from privjax import config_args

NOISE_VARIANCES = (0.0, 1e-4, 0.01, 0.1, 0.25, 0.5, 0.8, 1.0, 2.0, 4.0, 9.0)


def get_config(arg: str = ''):
  c = config_args.parent(__file__, '../eval/default.py').get_config(arg)  # it checks `arg`
  c.name = 'paper'
  c.transforms = ('none', 'pca:4')
  if not arg:
    c.noise_variances = NOISE_VARIANCES
  c.secrets = ('identity', 'gender')
  c.batch_size = 50
  return c
