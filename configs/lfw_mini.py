r"""LFW with gender: `vgg_mini` at 64x64 on `lfw_faces`.

  python train.py --config configs/lfw_mini.py:none --workdir runs/lfw/none \
      [--config.dataset.manual_dir=/path/to/lfw_files]
  python train.py --config configs/lfw_mini.py:siamese --workdir runs/lfw/siamese \
      --config.init_from=runs/lfw/none

The first run prepares the data set into the TFDS data dir from lfw.tgz (or its extracted lfw/
folder) and the gender labels, taken from the manual_dir when there, else downloaded (see
privjax/data/lfw.py for the addresses); later runs reuse it.  Gender comes from Kumar et al.'s
lfw_attributes.txt (gender_source=attributes) or from male_names.txt / female_names.txt in the
manual_dir (gender_source=names).  Most LFW people have one image: attacker identities are those
with >= min_images_per_identity images, the others train and test the model owner.

Arguments after the colon: those of configs/default.py.  Data set parameters are
--config.dataset.builder_kwargs.KEY=VALUE overrides: variant (original | deepfunneled),
gender_source (attributes | names), crop_fraction (default 0.5 of the 250 px: the face box), seed,
owner_fraction, owner_test_fraction, min_images_per_identity.
"""

import ml_collections

from privjax import config_args


def get_config(arg: str = ''):
  c = config_args.parent(__file__, 'default.py').get_config(arg)
  c.dataset.name = 'lfw_faces'
  c.dataset.config = ''  # named by the builder from builder_kwargs ('s64' by default)
  c.dataset.manual_dir = ''  # optional: local copies of the archive and label files
  k = c.dataset.builder_kwargs = ml_collections.ConfigDict()
  k.image_size = c.model.get_ref('image_size')  # stored at the model's size: no resizing
  k.crop_fraction = 0.5
  k.variant = 'original'
  k.gender_source = 'attributes'
  k.seed = 0
  k.owner_fraction = 0.5
  k.owner_test_fraction = 0.25
  k.min_images_per_identity = 4
  return c
