r"""Real face photos from scratch: `vgg_mini_photo` at 64x64 on an `image_folder` CSV (the LFW photos).

  python train.py --config configs/lfw_photos.py:csv=../shared/data/lfw_faces/labels.csv \
      --workdir runs/lfw/none
  python -m privjax frontier --config configs/lfw_photos.py:csv=../shared/data/lfw_faces/labels.csv \
      --workdir runs/frontier_lfw --quick

The recipe for a `none` model worth protecting on a few thousand real photos: dropout 0.5 in the
head (its key comes from the step), random crops of 80-100% of the side and flips, AdamW with a
warm-up and cosine decay, 800 steps (vgg_mini without them peaked at step 200 and then overfitted).
GroupNorm after each convolution was tried: on a fixed batch it learned far slower than without it,
so the extractor has no normalisation layer (it stays a pure function either way). Defences
fine-tune from that run with the same recipe at a lower rate. The data set is prepared by the `image_folder` builder
with its default split fractions (changing the split would be tuning the data).

Arguments: those of configs/image_folder.py (csv=PATH is required) plus configs/default.py's
(a defence name, tiny).
"""

from privjax import config_args


def get_config(arg: str = ''):
  c = config_args.parent(__file__, 'image_folder.py').get_config(arg)  # it checks `arg`
  c.model.arch = 'vgg_mini_photo'
  c.model.cut = 'conv4_2'
  c.input.random_crop = 0.8
  c.input.flip = True
  c.batch_size = 32
  c.optimizer.schedule = 'cosine'
  c.optimizer.warmup_steps = 100
  c.optimizer.decay_steps = c.get_ref('total_steps')
  c.optimizer.weight_decay = 1e-4
  if c.defence.name == 'none':
    c.optimizer.lr = 1e-3
    c.total_steps = 800
  else:
    c.optimizer.lr = 3e-4
    c.total_steps = 600
  c.log_every = 100
  c.eval_every = 200
  c.checkpoint_every = 200
  if 'tiny' in config_args.parse(arg, words=None, options=None):
    c.total_steps = 6
    c.optimizer.warmup_steps = 2
    c.log_every = c.eval_every = c.checkpoint_every = 3
  return c
