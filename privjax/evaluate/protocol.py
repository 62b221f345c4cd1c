"""The privacy measurement of one run: `evaluate_run(workdir, eval_config) -> report dict`.

It restores the run, extracts the frozen cut features of every split (in memory, or in a feature
store on disk for splits over the eval config's memory budget: privjax.evaluate.sources), and runs
the evaluators named in `eval_config.evaluators` (privjax/evaluate/evaluators/, one module each):
for every feature transform (none, PCA-k fitted on the model owner's training features and then
frozen) and every noise variance, those that run per setting (the cloud head's utility, each
attacker family on each secret, rank privacy, reconstructions and their re-identification...),
then those that run once (raw-pixel and reference-run attackers, feature statistics).

The report (`privjax.metrics.results.REPORT_FORMAT`) holds the run's description, every setting's metrics and the once
metrics (`privjax.metrics.results.Metric` as dicts, named `<evaluator>/<name>`), each evaluator's
details (report.json only), the pictures written, which evaluator produced which metrics and its
time. Progress goes to the terminal (`tqdm.auto`) and the metrics to TensorBoard under
`RUN/eval/<name>/step_<S>/tensorboard` (privjax.evaluate.tensorboard), beside the report files of
checkpoint step S (`report_dir`). Ctrl-C stops `evaluate` as `errors.Interrupted`.

Must not import privjax.train.loop: evaluation never updates the extractor.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import numpy as np
from tqdm import auto as tqdm

import privjax
from privjax import models, paths
from privjax.data import pipeline
from privjax.errors import DataError, EvalError, Interrupted, RunError
from privjax.evaluate import features as features_lib
from privjax.evaluate import shared, sources, tensorboard
from privjax.evaluate.evaluators import common
from privjax.metrics import classification, results
from privjax.privacy import transforms
from privjax.train import checkpoint as ckpt_lib

ATTACKER_SPLITS = sources.ATTACKER_SPLITS

_log = common.log


def check_request(run, eval_config) -> list[str]:
  """Validates labels, transforms and splits before any work; returns the secrets to attack."""
  for secret in eval_config.secrets:
    try:
      pipeline.label_num_classes(run.builder, secret)
    except DataError as e:
      raise EvalError(str(e)) from None
  splits = run.builder.info.splits
  for split in ATTACKER_SPLITS + (run.config.dataset.train_split, run.config.dataset.test_split):
    if split not in splits:
      raise EvalError(
          f'data set {run.builder.name} has no split {split!r}; it has: '
          f'{", ".join(sorted(splits.keys()))}'
      )
  dim = int(
      np.prod(
          models.feature_shape(models.get_architecture(run.config.model.arch), run.config.model.cut)
      )
  )
  for spec in eval_config.transforms:
    try:
      t = transforms.parse_transform(spec)
    except ValueError as e:
      raise EvalError(str(e)) from None
    if t.kind == 'pca' and t.k > dim:
      raise EvalError(
          f'transform {spec}: PCA size {t.k} is larger than the feature dimension '
          f'{dim} of cut {run.config.model.cut}'
      )
  for v in eval_config.noise_variances:
    if v < 0:
      raise EvalError(f'noise variance {v} is negative')
  return list(eval_config.secrets)


def load_evaluators(eval_config) -> list[tuple[str, object, object, str]]:
  """(name, module, settings, where it runs) of every evaluator named, in the config's order."""
  names = list(eval_config.evaluators)
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise EvalError(f'evaluators named twice: {", ".join(dupes)}')
  out = []
  for name in names:
    module = common.load(name)
    settings = common.settings_for(module, eval_config, name)
    out.append((name, module, settings, common.where(module, settings)))
  return out


def report_header(workdir, run, eval_config, secrets) -> dict:
  """The report's first keys: which run, checkpoint, cut and configs it evaluates."""
  cfg = run.config
  return {
      'format': results.REPORT_FORMAT,
      'privjax': privjax.__version__,
      # A local run as an absolute path; a URI unchanged.
      'workdir': os.fspath(paths.absolute(workdir)),
      'step': run.step,
      'defence': run.defence,
      'cut': cfg.model.cut,
      'arch': cfg.model.arch,
      'primary': cfg.dataset.primary,
      'secrets': secrets,
      'train_config': cfg.to_dict(),
      'eval_config': eval_config.to_dict(),
      'seeds': {'train': cfg.seed, 'eval': eval_config.seed},
  }


# The evaluations and trainings running in this process now, and how many have started:
# privjax.experiments.runner may evaluate runs in threads beside a training and beside one another.
# CPU time is the process's, so an evaluator's is its own only if nothing else ran meanwhile;
# otherwise its record says `cpu_shared`.
_ACTIVE = {'now': 0, 'started': 0}
_ACTIVE_LOCK = threading.Lock()
# Set by the runner when its plan stops (Ctrl-C, a failed training): an evaluation in a thread stops
# at its next evaluator rather than running to its end.
STOP = threading.Event()


def activity() -> tuple[int, int]:
  """(work running now, work started so far) in this process, as `busy()` counts them."""
  with _ACTIVE_LOCK:
    return _ACTIVE['now'], _ACTIVE['started']


def shared_since(before: tuple[int, int]) -> bool:
  """Whether other work ran in the process since `before`, an `activity()` taken inside `busy()`."""
  return before[0] != 1 or activity() != before


@contextlib.contextmanager
def busy():
  """Counts the work inside (an evaluation, or a training beside one) as running in the process."""
  with _ACTIVE_LOCK:
    _ACTIVE['now'] += 1
    _ACTIVE['started'] += 1
  try:
    yield
  finally:
    with _ACTIVE_LOCK:
      _ACTIVE['now'] -= 1


def evaluate_run(
    workdir: str, eval_config, *, step: int | None = None, data_dir: str | None = None
) -> dict:
  with busy():
    return _evaluate_run(workdir, eval_config, step=step, data_dir=data_dir)


def _evaluate_run(workdir: str, eval_config, *, step: int | None, data_dir: str | None) -> dict:
  run = features_lib.load_run(workdir, step, data_dir=data_dir)
  secrets = check_request(run, eval_config)
  evaluators = load_evaluators(eval_config)
  cfg = run.config
  splits = (cfg.dataset.train_split, cfg.dataset.test_split) + ATTACKER_SPLITS
  big = sources.oversized(run, splits, sources.budget_bytes(eval_config))
  if big:
    sources.check_streamable(run, eval_config, big)
    cannot = [name for name, module, _, _ in evaluators if not getattr(module, 'STORES', False)]
    if cannot:
      raise EvalError(
          f'memory_budget_gb: splits {", ".join(big)} do not fit it, and evaluators '
          f'{", ".join(cannot)} need whole feature arrays; leave them out of `evaluators`'
      )
  for _, module, settings, _ in evaluators:
    if hasattr(module, 'check'):
      module.check(run, settings, eval_config)
  # The untransformed, noiseless setting (else the first): where the 'baseline' evaluators run.
  grid = [(t, v) for t in eval_config.transforms for v in eval_config.noise_variances]
  baseline = ('none', 0.0) if ('none', 0.0) in grid else grid[0]
  per_setting = [e for e in evaluators if e[3] != 'once']
  names = {f'{t}/{v:g}' for t, v in grid}
  for name, _, _, where in per_setting:
    missing = sorted(set(where) - names) if isinstance(where, tuple) else []
    if missing:
      raise EvalError(
          f'evaluator {name!r}: where names settings {", ".join(missing)} that the sweep does not '
          f'have; it has: {", ".join(sorted(names))}'
      )
  out_dir = report_dir(workdir, eval_config, run.step)
  t_start = time.perf_counter()
  _log('[%s] extracting features at step %d', workdir, run.step)
  features = sources.extract(run, splits, eval_config)
  test = features.splits[cfg.dataset.test_split]
  overrides = eval_config.attacker_overrides.to_dict()

  def attack(families, *args, **kw):
    kw.setdefault('seed', eval_config.seed)
    kw.setdefault('overrides', overrides)
    kw.setdefault('use_memo', eval_config.attack_memo)
    return shared.attack_secret(families, *args, **kw)

  ctx = common.Context(
      run=run,
      config=eval_config,
      secrets=secrets,
      features=features,
      out_dir=out_dir,
      attack=attack,
      data_dir=data_dir,
  )
  full_model = classification.topk_accuracy(test.logits, test.labels[cfg.dataset.primary])
  report = {
      **report_header(workdir, run, eval_config, secrets),
      'num_examples': {k: v.size for k, v in features.splits.items()},
      'feature_shape': list(features.feature_shape),
      'streamed_splits': features.streamed,
      'full_model_accuracy': (
          shared.accuracy(
              full_model, test.size, label=f'{cfg.dataset.primary} accuracy, full model'
          ).to_dict()
      ),
      'settings': [],
      'once': {},
  }
  produced = {
      name: {'where': where, 'metrics': [], 'seconds': 0.0, 'cpu_seconds': 0.0}
      for name, _, _, where in evaluators
  }

  def run_one(name, module, settings, setting, target: dict):
    if STOP.is_set():
      raise KeyboardInterrupt  # the plan stopped: evaluation() says so in its one line
    ctx.evaluator, ctx.where = name, 'once' if setting is None else setting.name
    t0, cpu0, before = time.perf_counter(), time.process_time(), activity()
    out = module.run(ctx, setting, settings)
    produced[name]['seconds'] += time.perf_counter() - t0
    # CPU time of every thread: what the work costs, whatever else shares the machine, as long as
    # no other evaluation of this process ran meanwhile.
    produced[name]['cpu_seconds'] += time.process_time() - cpu0
    if shared_since(before):
      produced[name]['cpu_shared'] = True
    if not isinstance(out, dict) or not all(isinstance(m, results.Metric) for m in out.values()):
      raise EvalError(f'evaluator {name!r} returned {type(out).__name__}, not {{name: Metric}}')
    for k, m in results.prefixed(common.short_name(name), out).items():
      target[k] = m.to_dict()
    produced[name]['metrics'] = list(dict.fromkeys(produced[name]['metrics'] + list(out)))

  writer = tensorboard.EvalWriter(out_dir, run.step)
  bar = tqdm.tqdm(total=len(grid), desc='evaluation settings', unit='setting')
  try:
    for spec in eval_config.transforms:
      deployed = features.fit_transform(spec, cfg.dataset.train_split, eval_config.clip_percentile)
      for variance in eval_config.noise_variances:
        setting = features.setting(deployed, variance, baseline=(spec, variance) == baseline)
        _log('[%s] transform %s, noise variance %g', workdir, spec, variance)
        bar.set_postfix_str(f'{spec}, noise {variance:g}')
        entry = {
            'name': setting.name,
            'transform': spec,
            'noise_variance': float(variance),
            'clip': setting.clip,
            'uploaded_dims': setting.dims(),
            'baseline': setting.baseline,
            'metrics': {},
        }
        for name, module, settings, where in per_setting:
          if common.runs_at(where, setting):
            run_one(name, module, settings, setting, entry['metrics'])
        report['settings'].append(entry)
        writer.setting(entry)
        bar.update(1)
  finally:
    bar.close()  # a line printed after a failure starts below the bar

  once = [e for e in evaluators if e[3] == 'once']
  for name, module, settings, _ in tqdm.tqdm(once, desc='evaluators run once', unit='evaluator'):
    _log('[%s] evaluator %s', workdir, name)
    run_one(name, module, settings, None, report['once'])
  report['details'] = ctx.details
  report['images'] = ctx.written_images
  report['evaluators'] = produced
  report['seconds'] = time.perf_counter() - t_start
  report['versions'] = package_versions()
  writer.once(report)
  writer.close()
  return report


def report_dir(workdir: str, eval_config, step: int | None = None) -> str:
  """Where the evaluation `eval_config` of the run in `workdir` at checkpoint `step` (None: the
  run's latest checkpoint) writes its report files: `RUN/eval/<name>/step_<S>`, so that the
  evaluations of different steps sit side by side."""
  if step is None:
    step = ckpt_lib.latest_step(workdir)
    if step is None:
      raise RunError(f'{workdir} has no checkpoint to evaluate')
  return paths.join(workdir, 'eval', eval_config.name, f'step_{step}')


def evaluate(
    workdir: str, eval_config, *, step: int | None = None, data_dir: str | None = None
) -> tuple[dict, str]:
  """Evaluates the run in `workdir` and writes its report files: (the report, their folder).

  The one evaluation path of every command (eval, reproduce, frontier, sweep) and of the notebook.
  """
  from privjax.report import plots, tables

  try:
    report = evaluate_run(workdir, eval_config, step=step, data_dir=data_dir)
    # The step evaluated: a broken latest checkpoint falls back to an earlier one, whose folder
    # this is; the latest's report (if any) is left as it is.
    out_dir = report_dir(workdir, eval_config, report['step'])
    tables.write_report(report, out_dir, plots.privacy_accuracy_plots)
  except KeyboardInterrupt:
    raise Interrupted(
        'evaluation interrupted; rerun the same command to resume (the features extracted so far '
        'are cached)'
    ) from None
  return report, out_dir


def package_versions() -> dict:
  import importlib.metadata as md

  out = {}
  for name in (
      'jax',
      'jaxlib',
      'flax',
      'optax',
      'orbax-checkpoint',
      'tensorflow-datasets',
      'grain',
      'numpy',
  ):
    try:
      out[name] = md.version(name)
    except md.PackageNotFoundError:
      pass
  return out
