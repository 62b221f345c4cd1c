r"""Export the device side of a trained run as a portable artifact (StableHLO or TFLite).

usage: privjax export --workdir RUN --out DIR [--step N] [--pca_k K] [--clip_percentile P]
           [--noise_variance V] [--batch_size B] [--input_dtype uint8|float32]
           [--platforms cpu,cuda] [--tflite] [--overwrite]
       (also privjax-export, with the same flags)

Writes to DIR the extractor that runs on the user's device: it takes raw 0..255 RGB pixels and
returns the cut features after the evaluation's deployed transform: its PCA-k projection (--pca_k)
and, with Gaussian noise (--noise_variance), the clip of each upload to the norm C at the
--clip_percentile of the training features' norms before the noise (default 99, as the
evaluation; 0: no clip). DIR holds
extractor.bin (the serialised function with its weights), manifest.json (versions, shapes, dtypes,
normalisation, PCA size, clip norm, noise variance),
load_extractor.py (a loader that needs jax, not privjax) and MODEL_CARD.md (the data set and its
digest, the defence, the deployed transform and, from the run's evaluation of that checkpoint if
there is one, its utility and strongest attacks with their limits). With noise (or a learned-noise
defence) the function takes a second argument, a uint32[2] key: draw a new one from a secure source
for every call. DIR must be new or empty unless --overwrite is given. RUN and DIR may be URIs
(gs://bucket/...).
"""

from __future__ import annotations

from absl import flags

from privjax import paths
from privjax.commands import _cli

REQUIRED = ('workdir', 'out')


def define_flags():
  flags.DEFINE_string('workdir', None, 'Run directory to export.')
  flags.DEFINE_string('out', None, 'Output directory of the artifact.')
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  flags.DEFINE_integer('pca_k', None, "Project onto the evaluation's PCA-k (default: no PCA).")
  flags.DEFINE_float(
      'clip_percentile',
      99.0,
      'With noise, the clip: this percentile of the training norms (0: none).',
  )
  flags.DEFINE_float(
      'noise_variance',
      0.0,
      'Gaussian noise added on the device (then the artifact takes a uint32[2] key).',
  )
  flags.DEFINE_integer('batch_size', None, 'Fixed batch size (default: any).')
  flags.DEFINE_string('input_dtype', 'uint8', 'dtype of the pixel input: uint8 or float32.')
  flags.DEFINE_list('platforms', ['cpu'], 'Platforms to lower for (cpu, cuda, rocm, tpu).')
  flags.DEFINE_string('data_dir', None, "Data directory, instead of the run's (for fitting PCA).")
  flags.DEFINE_bool('tflite', False, 'Also write extractor.tflite (needs TensorFlow).')
  flags.DEFINE_bool('overwrite', False, 'Write into a non-empty --out, replacing an export there.')


def main(argv):
  from privjax import export

  f = flags.FLAGS
  manifest = _cli.run_or_exit(
      lambda: export.export_run(
          f.workdir,
          f.out,
          step=f.step,
          pca_k=f.pca_k,
          clip_percentile=f.clip_percentile,
          noise_variance=f.noise_variance,
          data_dir=f.data_dir,
          batch_size=f.batch_size,
          input_dtype=f.input_dtype,
          platforms=tuple(f.platforms),
          tflite=f.tflite,
          overwrite=f.overwrite,
      )
  )
  size = (paths.as_path(f.out) / export.ARTIFACT).stat().length
  ins = ', '.join(f'{i["name"]} {i["dtype"]}{i["shape"]}' for i in manifest['inputs'])
  out = manifest['output']
  print(
      f'{manifest["arch"]} cut {manifest["cut"]} at step {manifest["checkpoint_step"]}: '
      f'({ins}) -> {out["dtype"]}{out["shape"]}; {size / 2**20:.2f} MiB written to '
      f'{paths.join(f.out, export.ARTIFACT)}'
  )


def run():
  """The privjax-export console script."""
  _cli.run_command(__name__)
