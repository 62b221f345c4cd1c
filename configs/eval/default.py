"""Default privacy evaluation: `python eval.py --workdir RUN [--config configs/eval/default.py[:args]]`.

Arguments after the colon, comma-separated:
  fast    noise variances 0, 0.1, 1; the primary label attacked only without PCA and noise; 300
          reconstruction steps (the README's main job and the notebook: 3–5 min per run on
          2 CPU cores); rMLE on 32 images for 200 steps, open-set identity at the baseline only
  tiny    smallest settings, for tests

What `fast` leaves to the full config: noise variances 1e-4, 1e-2 and 9; the primary label attacked
at every setting; the attacker families pca_mlp and pca_linear's 32/128 components; 1500 decoder
steps; rMLE on 128 images for 300 steps with its TV weight tuned on the attacker's own images
(5 candidates); open-set identity at every setting.

Evaluators (privjax/evaluate/evaluators/, one module each) are named in `evaluators` and run in
that order; each has its section here: a switch (`probe`, `rank_privacy`, `pixel_reference`,
`reference_run`) or a ConfigDict (`reconstruction`, `inversion`, `reidentify`, `open_set`). A new
evaluator is its module plus its name in `evaluators` and its section.
"""

import ml_collections

from privjax import config_args


def get_config(arg: str = ''):
  args = config_args.parse(arg, words=('fast', 'tiny'), valid='fast, tiny')
  c = ml_collections.ConfigDict()
  c.name = 'default'
  c.seed = 0
  # Feature transforms applied on the device before upload ('none' or 'pca:k'), and the variances
  # of the Gaussian noise added after the transform (the paper's code swept 1e-4 ... 9).
  c.transforms = ('none', 'pca:32')
  c.noise_variances = (0.0, 1e-4, 1e-2, 0.1, 1.0, 9.0)
  c.secrets = ('identity', 'gender')  # a secret equal to the run's primary label is a check
  # Attack a secret equal to the primary label at every transform and noise level (True), or only
  # untransformed without noise (False; the primary probe measures it at the other settings).
  c.primary_secret_sweep = True
  # pca_linear / pca_mlp: the attacker's own PCA first (32/128/512 components, whitened or not,
  # chosen on its val split); on the demo features they are the strongest (privjax/attacks/pca.py).
  c.attackers = ('linear', 'mlp', 'transfer', 'pca_linear', 'pca_mlp')
  # Keyword arguments per family (privjax/attacks/registry.py), e.g. {'mlp': {'max_epochs': 50}};
  # 'max_iter' bounds each L-BFGS run of 'linear' / 'pca_linear' (a capped fit is flagged as not
  # converged); 'sizes' and 'whiten' set the pca_* families' PCA candidates.
  c.attacker_overrides = ml_collections.ConfigDict()
  c.pixel_reference = True  # the same attackers (all but transfer) on raw pixels
  # Reuse attack results already computed for identical inputs and settings (the raw-pixel and
  # reference-run attacks of earlier evaluations); see privjax/evaluate/memo.py.
  c.attack_memo = True
  c.reference_run = ''  # a non-private ('simple') run whose features are attacked the same way
  c.probe = True  # a fresh linear probe for the primary task on the transformed features
  c.rank_privacy = True
  c.reconstruction = ml_collections.ConfigDict()
  c.reconstruction.enabled = True
  c.reconstruction.steps = 1500
  c.reconstruction.batch_size = 64
  # White-box inversion (rMLE) through the frozen extractor and one deployed setting.
  c.inversion = ml_collections.ConfigDict()
  c.inversion.enabled = True
  c.inversion.num_images = 128  # a fixed subset of attacker-test (drawn with the seed)
  c.inversion.steps = 300
  c.inversion.lr = 0.05
  c.inversion.tv_weight = 1e-2  # used when tv_weights is empty
  c.inversion.tv_weights = (0.0, 1e-3, 1e-2, 1e-1, 1.0)  # tuned on the attacker's own images
  c.inversion.tune_images = 16
  c.inversion.batch_size = 64
  c.inversion.init = 'mean'  # the attacker's mean image, or 'grey'
  c.inversion.transform = 'none'  # the deployed setting inverted (the decoder's: none, noiseless)
  c.inversion.noise_variance = 0.0
  # Re-identification of the reconstructions (decoder, rMLE) by a classifier on raw pixels.
  c.reidentify = ml_collections.ConfigDict()
  c.reidentify.enabled = True
  c.reidentify.label = 'identity'
  c.reidentify.family = 'linear'  # any family but transfer; attacker_overrides apply
  # Open-set identity: an embedding learned on the attacker's people, matched on the owner's test
  # people (gallery / probe per person).
  c.open_set = ml_collections.ConfigDict()
  c.open_set.enabled = True
  c.open_set.settings = 'each'  # or 'baseline' (untransformed, noiseless only)
  c.open_set.label = 'identity'
  c.open_set.hidden = (512,)
  c.open_set.fars = (1e-2, 1e-3)
  c.open_set.gallery_per_person = 1
  c.open_set.mlp = ml_collections.ConfigDict()  # fit_mlp's other settings, e.g. max_epochs
  c.evaluators = (
      'head',
      'probe',
      'attackers',
      'rank_privacy',
      'open_set',
      'pixel_reference',
      'reference_run',
      'reconstruction',
      'inversion',
      'reidentify',
  )
  c.batch_size = 256  # feature-extraction batch
  # Splits whose float32 cut features exceed this many GB are extracted batch by batch into
  # feature shards (in feature_store_dtype) and attacked by the streaming families, in memory
  # bounded by it (privjax/evaluate/streamed.py says what runs and what is refused); 0 or None:
  # every split in memory.
  c.memory_budget_gb = 0.0
  c.feature_store_dtype = 'float16'
  if 'fast' in args or 'tiny' in args:
    # At 9 every feature is noise (both tasks at chance on the demo data); 0.1 and 1 are where the
    # trade-off is.
    c.noise_variances = (0.0, 0.1, 1.0)
    c.primary_secret_sweep = False
    c.reconstruction.steps = 300
    # The attacker's own PCA is the strongest family on the demo's features (50.5% identity top-1
    # against 36% for the plain linear attacker), so a fast evaluation keeps it, with the two
    # candidates that are cheap: PCA-512, whitened or not, chosen on the attacker's val split.
    # The full setting also tries 32 and 128 components and pca_mlp.
    c.attackers = ('linear', 'mlp', 'transfer', 'pca_linear')
    c.attacker_overrides = ml_collections.ConfigDict(
        {'pca_linear': {'sizes': (512,), 'whiten': (False, True)}}
    )
    c.inversion.num_images = 32
    c.inversion.steps = 200
    c.inversion.tv_weights = ()
    c.open_set.settings = 'baseline'
  if 'tiny' in args:
    c.transforms = ('none', 'pca:4')
    c.noise_variances = (0.0, 1.0)
    c.attackers = ('linear', 'transfer')
    c.attacker_overrides = ml_collections.ConfigDict(
        {'transfer': {'max_epochs': 3}, 'linear': {'max_iter': 30}}
    )
    c.reconstruction.steps = 20
    c.inversion.num_images = 4
    c.inversion.steps = 5
    c.inversion.batch_size = 4
    c.open_set.hidden = (16,)
    c.open_set.mlp = ml_collections.ConfigDict({'max_epochs': 3})
    c.batch_size = 32
  return c
