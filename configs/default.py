"""Default experiment: `vgg_mini` on the embedded `synthetic_faces` data set, on CPU.

The paper's pipeline in two commands (the README's main job runs both, then evaluates):

  python train.py --config configs/default.py:simple --workdir runs/demo/simple
  python train.py --config configs/default.py:siamese --workdir runs/demo/siamese \
      --config.init_from=runs/demo/simple

Arguments after the colon, comma-separated:
  simple | siamese   training mode (default simple)
  calibrated         margin = margin_scale x median different-pair distance at the start
  normalized         contrastive loss on L2-normalised cut features (margin in [0, 2] units)
  tiny               a few steps on the tiny data set configuration, for tests and smoke runs
"""

import ml_collections


def get_config(arg: str = ''):
  args = [a for a in (arg or '').split(',') if a]
  known = {'simple', 'siamese', 'calibrated', 'normalized', 'tiny'}
  unknown = [a for a in args if a not in known]
  if unknown:
    raise ValueError(f'unknown config argument(s) {unknown}; valid: {sorted(known)}')
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.mode = 'siamese' if 'siamese' in args else 'simple'

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = 'synthetic_faces'
  c.dataset.config = 'default'
  c.dataset.data_dir = ''  # '' = the TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)
  c.dataset.primary = 'gender'
  c.dataset.secret = 'identity'
  c.dataset.train_split = 'train'
  c.dataset.test_split = 'test'

  c.model = ml_collections.ConfigDict()
  c.model.arch = 'vgg_mini'
  c.model.cut = 'conv4_2'
  c.model.image_size = 64
  c.model.dtype = 'float32'
  # A torchvision .pth or Keras .h5 VGG-16 weight file loaded into a fresh run (not with init_from);
  # config.input must then be the file's normalisation (privjax.models.pretrained.normalization_for).
  c.model.pretrained = ''

  # Normalisation is the first op of the extractor, so the device-side artifact takes raw pixels.
  c.input = ml_collections.ConfigDict()
  c.input.mean = (0.5, 0.5, 0.5)  # in [0, 1] pixel units, RGB order
  c.input.std = (0.25, 0.25, 0.25)
  c.input.channel_order = 'RGB'
  c.input.flip = True
  c.input.resize = False  # images of another size than the model's are an error unless True
  c.input.center_crop = 1.0  # fraction of the shorter side kept before resizing

  c.batch_size = 32  # pairs per step: both branches make one batch of 2 x 32 images
  c.eval_batch_size = 256
  c.data_threads = 2

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.lr = 1e-4  # the paper's Adam rate for fine-tuning
  c.optimizer.head_lr_mult = 10.0  # the paper's code trains the layers after the cut 10x faster
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999

  c.contrastive = ml_collections.ConfigDict()
  c.contrastive.weight = 0.01  # lambda, from the paper's code
  c.contrastive.margin = 10.0  # from the paper's code, in feature-distance units
  c.contrastive.margin_mode = 'calibrated' if 'calibrated' in args else 'fixed'
  c.contrastive.margin_scale = 1.0
  c.contrastive.calibration_batches = 4
  c.contrastive.normalize = 'normalized' in args

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

  if c.mode == 'simple':
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
