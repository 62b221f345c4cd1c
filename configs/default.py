"""Default experiment: `vgg_mini` on the embedded `synthetic_faces` data set, on CPU.

The paper's pipeline in two commands (the README's main job runs both, then evaluates):

  python train.py --config configs/default.py:none --workdir runs/demo/none
  python train.py --config configs/default.py:siamese --workdir runs/demo/siamese \
      --config.init_from=runs/demo/none

Arguments after the colon, comma-separated:
  none | siamese     the defence: none (the default) or siamese; any defence by name
                     (`nopeek`, `adversarial`, `learned_noise`, `siamese+adversarial`, ...)
  calibrated         siamese margin = margin_scale x median different-pair distance at the start
  normalized         contrastive loss on L2-normalised cut features (margin in [0, 2] units)
  tiny               a few steps on the tiny data set configuration, for tests and smoke runs

Defences (privjax/defences/<name>.py) each have a section `defence.<name>`, built from the
`Settings` their module declares; `strength` names the key the frontier varies (`privjax frontier`)
and `strengths` its default grid. A new defence is one module.
"""

import ml_collections

from privjax import config_args, defences, plugins
from privjax.errors import DefenceError

WORDS = ('calibrated', 'normalized', 'tiny')


def get_config(arg: str = ''):
  args = config_args.parse(
      arg,
      words=lambda w: w in WORDS or _is_defence(w),
      options=(),
      valid=f'{", ".join(WORDS)} or a defence name (privjax/defences/<name>.py, joined by +)',
  )
  defence_args = [a for a in args.words if a not in WORDS]
  if len(defence_args) > 1:
    raise ValueError(
        f'config arguments name more than one defence: {list(args.words)}; combine with +'
    )
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = 'synthetic_faces'
  c.dataset.config = 'default'
  c.dataset.data_dir = ''  # '' = the TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)
  c.dataset.primary = 'gender'
  c.dataset.secret = 'identity'
  c.dataset.train_split = 'train'
  c.dataset.test_split = 'test'
  # A resumed run whose data set changed (its content digest, recorded in config.json) is refused;
  # True continues it on the new data (the digest recorded then is the new one).
  c.dataset.allow_new_data = False

  c.model = ml_collections.ConfigDict()
  c.model.arch = 'vgg_mini'
  c.model.cut = 'conv4_2'
  c.model.image_size = 64
  c.model.dtype = 'float32'
  # A torchvision .pth or Keras .h5 VGG-16 weight file, or 'imagenet' (the ImageNet convolutions
  # installed with the [imagenet] extra), loaded into a fresh run (not with init_from); config.input
  # must then be the weights' normalisation (privjax.models.pretrained.normalization_for).
  c.model.pretrained = ''

  # Normalisation is the first op of the extractor, so the device-side artifact takes raw pixels.
  c.input = ml_collections.ConfigDict()
  c.input.mean = (0.5, 0.5, 0.5)  # in [0, 1] pixel units, RGB order
  c.input.std = (0.25, 0.25, 0.25)
  c.input.channel_order = 'RGB'
  c.input.flip = True
  c.input.resize = False  # images of another size than the model's are an error unless True
  c.input.center_crop = 1.0  # fraction of the shorter side kept before resizing
  c.input.random_crop = 1.0  # < 1: training crops of a random side in [random_crop, 1] x side

  c.batch_size = 32  # pairs per step: both branches make one batch of 2 x 32 images
  c.eval_batch_size = 256
  c.data_threads = 2
  # Training batches loaded in this many grain worker processes (mp_prefetch), each with
  # `data_threads` threads; 0 loads in threads of the training process. The batches are the same
  # either way (privjax.data.pipeline.pair_batches); workers help where one process's threads
  # cannot keep up (224 x 224 inputs).
  c.data_workers = 0

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.lr = 1e-4  # the paper's Adam rate for fine-tuning
  c.optimizer.head_lr_mult = 10.0  # the paper's code trains the layers after the cut 10x faster
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.schedule = 'constant'  # or 'cosine': linear warm-up, then cosine decay to 0
  c.optimizer.warmup_steps = 0
  c.optimizer.decay_steps = 0  # the cosine's length (usually total_steps)
  c.optimizer.weight_decay = 0.0  # > 0: AdamW

  # Each defence's section `defence.<name>` holds the defaults its module declares (`Settings`
  # in privjax/defences/<name>.py, read from the source: loading a config imports no jax).
  c.defence = d = plugins.config_sections('privjax.defences', defences.names())
  d.name = defence_args[0] if defence_args else 'none'
  d.calibration_batches = 4  # batches seen before training by defences that calibrate
  if 'calibrated' in args:
    d.siamese.margin_mode = 'calibrated'
  d.siamese.normalize = 'normalized' in args

  c.init_from = ''  # another run's workdir: its latest parameters initialise this run
  c.total_steps = 500
  c.log_every = 50
  c.eval_every = 250
  c.checkpoint_every = 250
  c.keep_checkpoints = 2
  c.progress = True
  # Multi-host: join the job's other processes (jax.distributed.initialize). Launchers that set
  # JAX_COORDINATOR_ADDRESS or start several srun/mpirun tasks turn this on by themselves.
  c.distributed = False

  if d.name == 'none':
    # From scratch the demo network needs a larger rate than the paper's fine-tuning rate.
    c.optimizer.lr = 1e-3
  else:
    c.total_steps = 300

  if 'tiny' in args:
    c.dataset.config = 'tiny'
    c.batch_size = 8
    c.eval_batch_size = 32
    c.total_steps = 6
    c.log_every = 2
    c.eval_every = 3
    c.checkpoint_every = 3
    c.progress = False
  return c


def _is_defence(name: str) -> bool:
  try:
    defences.parse(name)
  except DefenceError:
    return False
  return True
