r"""The device side of a split model as a portable, versioned artifact (StableHLO via `jax.export`).

The command is `privjax export` (privjax.commands.export). The output directory must be new or
empty: one that holds anything (another export, other files) is refused untouched unless
`overwrite=True` (`--overwrite`). The run and the output directory may be URIs (`gs://bucket/...`,
through etils.epath: privjax.paths); `load_exported` reads a local directory only (it uses nothing
but jax and the standard library).

What lives here: `export_extractor`, which serialises pixels -> extractor (its `Normalize` input
layer included, so it takes raw 0..255 RGB pixels [B, S, S, 3]) -> optional frozen PCA projection ->
optional Gaussian noise, and writes to the output directory
  extractor.bin      `jax.export` serialisation (StableHLO with the weights as constants)
  manifest.json      format version, privjax/jax versions, arch, cut, checkpoint step, input and
                     output shapes and dtypes, normalisation, PCA k, noise variance
  load_extractor.py  `load_exported`'s source: an application needs it and jax, not privjax
  MODEL_CARD.md      what the artifact is, for a reader: data set and digest, defence, deployed
                     transform and, from the run's evaluation report (if any, of that checkpoint),
                     utility and the strongest attacks with their limits (privjax.report.model_card);
`load_exported` itself; and `export_run`, what the command does (restore a run, fit or reuse the
evaluation's PCA, export).

Noise: with noise_variance > 0, or a defence's learned noise in the extractor (privjax.defences), the
function takes a second argument, `key`, uint32[2]: the raw data
of a threefry2x32 PRNG key. Draw it afresh from a secure source for every call
(`numpy.frombuffer(os.urandom(8), numpy.uint32)`): two uploads made with the same key carry the same
noise, so their difference is noise-free. All examples of a batch get independent noise.
Without either there is no key argument: the artifact equals one exported without noise.

Must not import privjax.train.loop (exporting never trains); `load_exported` must not use privjax.
"""

from __future__ import annotations

import inspect
import json
import math
import os

import jax
import jax.numpy as jnp
from flax import nnx

import privjax
from privjax import models, paths
from privjax.errors import ConfigError
from privjax.evaluate import features as features_lib
from privjax.privacy import dp, transforms
from privjax.report import model_card
from privjax.train import checkpoint as ckpt_lib

FORMAT = 'privjax-extractor'
FORMAT_VERSION = 1  # bump when the calling convention or the manifest's meaning changes
ARTIFACT = 'extractor.bin'
MANIFEST = 'manifest.json'
LOADER = 'load_extractor.py'
INPUT_DTYPES = ('uint8', 'float32')


def load_exported(path):
  """`load_exported(dir)(pixels[, key]) -> features` for an artifact written by `export_extractor`.

  Needs only jax (with its optional dependency flatbuffers) and the standard library: copy this
  function into an application as it is. `path` is the artifact directory or its extractor.bin.
  The function takes pixels of the manifest's input shape and dtype (raw 0..255 RGB values) and,
  when the artifact adds noise, a uint32[2] key that must be new for every call; the manifest is
  its `.manifest` attribute.
  """
  import json
  import os

  import jax

  directory = path if os.path.isdir(path) else os.path.dirname(path) or '.'
  with open(os.path.join(directory, 'manifest.json')) as f:
    manifest = json.load(f)
  if manifest.get('format') != 'privjax-extractor' or manifest.get('format_version') != 1:
    raise ValueError(
        f'{directory} holds no privjax extractor of format version 1 (manifest: '
        f'{manifest.get("format")} version {manifest.get("format_version")})'
    )
  with open(os.path.join(directory, manifest['artifact']), 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))

  def extractor(*args):
    return exported.call(*args)

  extractor.manifest = manifest
  return extractor


def _shape(dims) -> list:
  return [d if isinstance(d, int) else str(d) for d in dims]


def _device_function(model: models.SplitModel, pca, clip, noise_variance: float):
  graphdef, state = nnx.split(model.extractor)
  samples = model.extractor.samples  # a defence's learned noise draws on the device

  def features(pixels, key=None):
    z = nnx.merge(graphdef, state)(pixels, rng=key)
    z = z if pca is None else pca.apply(z)
    return z if clip is None else dp.clip_norm(z, clip)

  if noise_variance == 0 and not samples:
    return features

  def noisy_features(pixels, key):
    key = jax.random.wrap_key_data(key, impl='threefry2x32')
    k_extractor = None
    if samples:
      key, k_extractor = jax.random.split(key)
    z = features(pixels, k_extractor)
    return transforms.add_gaussian_noise(key, z, noise_variance) if noise_variance else z

  return noisy_features


OUR_FILES = (ARTIFACT, MANIFEST, LOADER, model_card.FILE, 'extractor.tflite')


def check_out_dir(out_path: str, overwrite: bool = False) -> None:
  """An output directory is new or empty, or `overwrite` says its files may be replaced."""
  out = paths.as_path(out_path)
  is_dir = out.is_dir()
  if not is_dir and out.exists():
    raise ConfigError(f'--out {out_path} exists and is not a directory')
  held = sorted(p.name for p in out.iterdir()) if is_dir else []
  if held and not overwrite:
    what = 'another export' if MANIFEST in held else 'files'
    shown = ', '.join(held[:4]) + (f' and {len(held) - 4} more' if len(held) > 4 else '')
    raise ConfigError(
        f'--out {out_path} is not empty: it holds {what} ({shown}); use a new or '
        f'empty directory, or --overwrite to replace {", ".join(OUR_FILES[:4])} there'
    )


def _check_request(noise_variance, batch_size, input_dtype, platforms, tflite):
  if not math.isfinite(noise_variance) or noise_variance < 0:
    raise ConfigError(f'noise variance must be finite and >= 0, got {noise_variance}')
  if batch_size is not None and batch_size < 1:
    raise ConfigError(f'batch size must be positive (or None for any batch), got {batch_size}')
  if input_dtype not in INPUT_DTYPES:
    raise ConfigError(
        f'input dtype {input_dtype!r} is not valid; choose one of: ' f'{", ".join(INPUT_DTYPES)}'
    )
  if not platforms:
    raise ConfigError('give at least one platform (cpu, cuda, rocm, tpu)')
  if tflite:
    _require_tensorflow()


def _check_pca(model, pca):
  shape = models.feature_shape(models.get_architecture(model.arch), model.cut)
  if pca is not None and pca.dim != math.prod(shape):
    raise ConfigError(
        f'the PCA projects {pca.dim} features but cut {model.cut} of {model.arch} '
        f'has {math.prod(shape)} ({"x".join(map(str, shape))})'
    )


def _resolve(run_workdir_or_model, step, data_dir):
  """(model, the loaded Run or None) of a workdir, a loaded Run or a model."""
  if isinstance(run_workdir_or_model, (str, os.PathLike)):
    run_workdir_or_model = features_lib.load_run(
        os.fspath(run_workdir_or_model), step, data_dir=data_dir
    )
  if isinstance(run_workdir_or_model, features_lib.Run):
    return run_workdir_or_model.model, run_workdir_or_model
  if isinstance(run_workdir_or_model, models.SplitModel):
    return run_workdir_or_model, None
  raise TypeError(
      f'expected a run workdir, a privjax.evaluate.features.Run or a SplitModel, got '
      f'{type(run_workdir_or_model).__name__}'
  )


def export_extractor(
    run_workdir_or_model,
    out_path: str,
    *,
    pca=None,
    clip: float | None = None,
    noise_variance: float = 0.0,
    batch_size: int | None = None,
    platforms=('cpu',),
    input_dtype: str = 'uint8',
    step: int | None = None,
    data_dir: str | None = None,
    tflite: bool = False,
    overwrite: bool = False,
) -> dict:
  """Writes the device-side artifact to directory `out_path`; returns its manifest.

  `run_workdir_or_model`: a run's workdir (restored at `step`, default latest), a loaded
  `features.Run` or a `SplitModel`. `pca`: a fitted `pca.PCA` of this cut's features or
  None. `clip`: the L2 norm each upload is scaled down to after the PCA, before the noise (the
  evaluation's deployed transform, privjax.evaluate.sources), or None; it needs noise, which it
  bounds.
  `batch_size=None` exports a symbolic batch dimension: one artifact serves any batch size.
  `tflite=True` also writes extractor.tflite through jax2tf and TensorFlow; without TensorFlow that
  is an error, raised before anything is written. `out_path` must be new or empty unless
  `overwrite` (then a previous export's extractor.tflite goes too when this one writes none).
  """
  noise_variance = float(noise_variance)
  _check_request(noise_variance, batch_size, input_dtype, platforms, tflite)
  check_out_dir(out_path, overwrite)
  if clip is not None and not noise_variance:
    raise ConfigError(
        'a clip without noise bounds nothing; export the clip with noise_variance > 0'
    )
  model, run = _resolve(run_workdir_or_model, step, data_dir)
  _check_pca(model, pca)
  size = models.get_architecture(model.arch).image_size
  batch = jax.export.symbolic_shape('batch')[0] if batch_size is None else batch_size
  specs = [jax.ShapeDtypeStruct((batch, size, size, 3), jnp.dtype(input_dtype))]
  takes_key = noise_variance > 0 or model.extractor.samples
  if takes_key:
    specs.append(jax.ShapeDtypeStruct((2,), jnp.uint32))
  fn = _device_function(model, pca, clip, noise_variance)
  exported = jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*specs)

  normalize = model.extractor.input
  inputs = [
      {
          'name': 'pixels',
          'shape': _shape(specs[0].shape),
          'dtype': input_dtype,
          'range': '0..255, RGB, NHWC',
      }
  ]
  if takes_key:
    inputs.append(
        {
            'name': 'key',
            'shape': [2],
            'dtype': 'uint32',
            'meaning': 'threefry2x32 key data; draw afresh for every call',
        }
    )
  out_aval = exported.out_avals[0]
  manifest = {
      'format': FORMAT,
      'format_version': FORMAT_VERSION,
      'artifact': ARTIFACT,
      'privjax_version': privjax.__version__,
      'jax_version': jax.__version__,
      'calling_convention_version': exported.calling_convention_version,
      'platforms': list(exported.platforms),
      'arch': model.arch,
      'cut': model.cut,
      'checkpoint_step': None if run is None else run.step,
      'run': None if run is None else paths.absolute(run.workdir).name,
      'inputs': inputs,
      'output': {'shape': _shape(out_aval.shape), 'dtype': str(out_aval.dtype)},
      'cut_feature_shape': list(
          models.feature_shape(models.get_architecture(model.arch), model.cut)
      ),
      'pca_k': None if pca is None else pca.k,
      'clip_norm': clip,
      'noise_variance': noise_variance,
      'normalization': {
          'mean': list(normalize.mean),
          'std': list(normalize.std),
          'channel_order': normalize.channel_order,
          'formula': '(x / 255 - mean) / std, x = the RGB pixels in channel_order',
      },
  }
  files = {
      ARTIFACT: exported.serialize(),
      LOADER: (
          f'"""Loads a privjax extractor ({FORMAT} version {FORMAT_VERSION}); needs jax only."""'
          f'\n\n\n{inspect.getsource(load_exported)}'
      ),
      # None: the replaced export's extractor.tflite goes, not this one's
      'extractor.tflite': _tflite_bytes(fn, specs) if tflite else None,
  }
  if tflite:
    manifest['tflite'] = 'extractor.tflite'
  files[MANIFEST] = json.dumps(manifest, indent=2)
  files[model_card.FILE] = _model_card(manifest, run)
  _write_files(out_path, files)
  return manifest


def _model_card(manifest: dict, run) -> str:
  """MODEL_CARD.md: from the manifest, the run's config and its default evaluation's report."""
  if run is None:
    return model_card.model_card(manifest, None)
  from privjax import api
  from privjax.report import tables

  where = api.report_dir(run.workdir, step=run.step)
  try:
    report = tables.load_report(where)
  except FileNotFoundError:
    report = None
  return model_card.model_card(
      manifest, run.config.to_dict(), report, paths.join(where, 'report.json'), run.defence
  )


def _write_files(out_path: str, files: dict) -> None:
  """Writes `files` ({name: bytes or str; None removes the file}) into `out_path`.

  Locally, a failed write (a full disk) leaves the directory as it was, a previous export whole:
  every file is written under a temporary name first (removed on failure), and the names change
  (renames, which need no space) only once all are written. On an object store each file is
  written directly (an object appears whole or not at all; the set of them is not atomic).
  """
  out = paths.as_path(out_path)
  out.mkdir(parents=True, exist_ok=True)
  if not paths.is_local(out_path):
    for name, data in files.items():
      if data is None:
        (out / name).unlink(missing_ok=True)
      elif not isinstance(data, str):
        (out / name).write_bytes(bytes(data))
      else:
        (out / name).write_text(data)
    return
  staged = {}
  try:
    for name, data in files.items():
      if data is not None:
        staged[name] = os.path.join(out_path, f'.{name}.tmp.{os.getpid()}')
        with open(staged[name], 'w' if isinstance(data, str) else 'wb') as f:
          f.write(data)
  except BaseException:
    for tmp in staged.values():
      if os.path.exists(tmp):
        os.remove(tmp)
    raise
  for name, data in files.items():
    if data is None:
      (out / name).unlink(missing_ok=True)
    else:
      os.replace(staged[name], os.path.join(out_path, name))


def _require_tensorflow():
  try:
    import tensorflow  # noqa: F401
  except ImportError:
    raise ConfigError(
        'TFLite export needs TensorFlow, which is not installed (pip install '
        'tensorflow); the StableHLO artifact needs no TensorFlow'
    ) from None


def _tflite_bytes(fn, specs) -> bytes:
  """jax2tf (native serialisation) -> SavedModel -> TFLite converter, as jax2tf documents."""
  import tempfile

  import tensorflow as tf
  from jax.experimental import jax2tf

  symbolic_batch = not isinstance(specs[0].shape[0], int)
  polymorphic = ['(b, ...)' if symbolic_batch else None] + [None] * (len(specs) - 1)
  module = tf.Module()
  module.f = tf.function(
      jax2tf.convert(fn, polymorphic_shapes=polymorphic),
      input_signature=[
          tf.TensorSpec([d if isinstance(d, int) else None for d in s.shape], tf.as_dtype(s.dtype))
          for s in specs
      ],
      autograph=False,
  )
  with tempfile.TemporaryDirectory() as saved:
    tf.saved_model.save(module, saved, signatures=module.f.get_concrete_function())
    return tf.lite.TFLiteConverter.from_saved_model(saved).convert()


def check_pca_k(arch: str, cut: str, k: int) -> None:
  dims = math.prod(models.feature_shape(models.get_architecture(arch), cut))
  if not 1 <= k <= dims:
    raise ConfigError(f'--pca_k must be in [1, {dims}] (the features of cut {cut}), got {k}')


def run_transform(run: features_lib.Run, k: int | None, clip_percentile: float):
  """(PCA-k or None, clip norm C or None): the deployed transform evaluation uses for `run`, fitted
  on the training split's cut features (`clip_percentile` 0: no clip). The PCA is the evaluation's
  own (cached beside the features, RUN/eval/cache/step_<S>/pca_<k>.npz), so export and evaluation
  agree."""
  from privjax.evaluate import sources

  split = run.config.dataset.train_split
  if k is not None:
    check_pca_k(run.model.arch, run.model.cut, k)
    try:
      n = run.builder.info.splits[split].num_examples
    except (KeyError, AttributeError, TypeError):
      n = None  # unknown before the features are read: the PCA fit checks
    if n and k > n:
      raise ConfigError(
          f'--pca_k {k} is more than the {n} images of the training split {split!r} the PCA is '
          f'fitted on; use --pca_k <= {n}'
      )
  train = features_lib.extract(run, split)
  features = sources.Features.from_arrays({split: {'features': train['features']}}, run=run)
  deployed = features.fit_transform('none' if k is None else f'pca:{k}', split, clip_percentile)
  return deployed.pca, deployed.clip


def export_run(
    workdir: str,
    out_dir: str,
    *,
    step: int | None = None,
    pca_k: int | None = None,
    clip_percentile: float = dp.DEFAULT_PERCENTILE,
    noise_variance: float = 0.0,
    batch_size: int | None = None,
    platforms=('cpu',),
    input_dtype: str = 'uint8',
    data_dir: str | None = None,
    tflite: bool = False,
    overwrite: bool = False,
) -> dict:
  """The command: restore `workdir`, fit the evaluation's deployed transform (its PCA-`pca_k` if
  asked; with noise, the clip at `clip_percentile` of the training features' norms, 0: no clip),
  export.

  Requests that cannot work (bad noise, batch, dtype, PCA size; TFLite without TensorFlow; an
  output directory that is not empty, without `overwrite`) fail before the slow restore.
  """
  _check_request(float(noise_variance), batch_size, input_dtype, platforms, tflite)
  if clip_percentile and not 0 < clip_percentile <= 100:
    raise ConfigError(f'--clip_percentile must be in (0, 100] (0: no clip), got {clip_percentile}')
  check_out_dir(out_dir, overwrite)
  if pca_k is not None:
    saved = ckpt_lib.read_config(workdir)
    check_pca_k(saved['model']['arch'], saved['model']['cut'], pca_k)
  run = features_lib.load_run(workdir, step, data_dir=data_dir)
  pca, clip = run_transform(run, pca_k, clip_percentile if noise_variance else 0)
  return export_extractor(
      run,
      out_dir,
      pca=pca,
      clip=clip,
      noise_variance=noise_variance,
      batch_size=batch_size,
      platforms=platforms,
      input_dtype=input_dtype,
      tflite=tflite,
      overwrite=overwrite,
  )
