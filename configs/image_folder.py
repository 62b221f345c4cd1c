r"""Your own face photos: `vgg_mini` at 64x64 on an `image_folder` data set (a CSV of photos).

  python train.py --config configs/image_folder.py:none,csv=/path/to/faces.csv \
      --workdir runs/mine/none
  python train.py --config configs/image_folder.py:siamese,csv=/path/to/faces.csv \
      --workdir runs/mine/siamese --config.init_from=runs/mine/none

The CSV has a header line and the columns `path` (image file, relative to the CSV's folder; any
size and format Pillow reads), `identity` (who is pictured) and attribute columns such as
`gender` (string or integer values; strings become class indices in sorted order).  The photos are
prepared once into the TFDS data dir (centre square, resized to model.image_size, PNG); missing or
unreadable files are reported and skipped, and duplicates dropped.  Editing the CSV prepares a new
data set, which a run trained on the old one refuses to resume on (--config.dataset.allow_new_data).

Arguments after the colon, comma-separated: those of configs/default.py (none | siamese,
calibrated, normalized, tiny) plus
  csv=PATH        the CSV (or --config.dataset.builder_kwargs.csv=PATH, e.g. for a path with commas)
  primary=COLUMN  the model owner's task, default gender (--config.dataset.primary)
  attributes=A+B  further columns to include as labels, e.g. smiling to attack it
Other data set parameters are --config.dataset.builder_kwargs.KEY=VALUE overrides: crop_fraction
(fraction of the shorter side kept, default 1.0), seed, owner_fraction, owner_test_fraction,
min_images_per_identity (attacker identities need that many photos; others stay on the owner side)
and prefix (a readable start of the prepared data set's name).
"""

import ml_collections

from privjax import config_args

OPTIONS = ('csv', 'primary', 'attributes')


def get_config(arg: str = ''):
  # Bare words are configs/default.py's: it checks them.
  args = config_args.parse(
      arg,
      words=None,
      options=OPTIONS,
      valid='csv=, primary=, attributes= (and the arguments of configs/default.py)',
  )
  options = args.options
  c = config_args.parent(__file__, 'default.py').get_config(args.text(options=False))
  c.dataset.name = 'image_folder'
  c.dataset.config = ''  # named by the builder from the CSV's content and the parameters
  c.dataset.primary = options.get('primary', 'gender')
  k = c.dataset.builder_kwargs = ml_collections.ConfigDict()
  k.csv = options.get('csv', '')
  k.prefix = ''
  k.primary = c.dataset.get_ref('primary')  # the data set's task follows the training task
  k.attributes = tuple(a for a in options.get('attributes', '').split('+') if a)
  k.image_size = c.model.get_ref('image_size')  # stored at the model's size: no resizing
  k.crop_fraction = 1.0
  k.seed = 0
  k.owner_fraction = 0.5
  k.owner_test_fraction = 0.25
  k.min_images_per_identity = 4
  return c
