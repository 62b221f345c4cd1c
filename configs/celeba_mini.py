r"""CelebA with identities: `vgg_mini` at 64x64 on `celeba_faces`, built from the official files.

  python train.py --config configs/celeba_mini.py:none --workdir runs/celeba/none \
      --config.dataset.manual_dir=/path/to/celeba
  python train.py --config configs/celeba_mini.py:siamese --workdir runs/celeba/siamese \
      --config.dataset.manual_dir=/path/to/celeba --config.init_from=runs/celeba/none

The manual_dir holds, from the official CelebA page (Google Drive): img_align_celeba/ (or
img_align_celeba.zip), list_attr_celeba.txt, identity_CelebA.txt and list_eval_partition.txt.  The
first run prepares the data set (centre square of crop_fraction x 178 px, resized to
model.image_size) into the TFDS data dir; later runs reuse it without the manual_dir.  Splits are
identity-based (privjax.data.splits); the official partition is kept as the label eval_partition.

Arguments after the colon: those of configs/default.py.  Data set parameters are
--config.dataset.builder_kwargs.KEY=VALUE overrides: crop_fraction, seed, owner_fraction,
owner_test_fraction, min_images_per_identity.
"""

import ml_collections

from privjax import config_args


def get_config(arg: str = ''):
  c = config_args.parent(__file__, 'default.py').get_config(arg)
  c.dataset.name = 'celeba_faces'
  c.dataset.config = ''  # named by the builder from builder_kwargs ('s64' by default)
  c.dataset.manual_dir = ''  # folder with the official files; needed only to prepare
  k = c.dataset.builder_kwargs = ml_collections.ConfigDict()
  k.image_size = c.model.get_ref('image_size')  # stored at the model's size: no resizing
  k.crop_fraction = 1.0  # of the 178 px width: the whole aligned head
  k.seed = 0
  k.owner_fraction = 0.5
  k.owner_test_fraction = 0.25
  k.min_images_per_identity = 4
  return c
