"""MODEL_CARD.md of an exported extractor: `model_card(manifest, config, report, report_path)`.

privjax.export writes it beside every artifact. Everything in it is copied from three sources:
the artifact's manifest (architecture, cut, shapes, the deployed transform: PCA k, clip norm, noise
variance), the run's saved config (config.json: data set and its digest, defence and its settings,
training) and, when the run has been evaluated at the exported checkpoint, the evaluation's report
(utility and the strongest attacks at the setting the artifact deploys, with their standard errors,
and which attackers were run: the limits of those figures). Nothing here computes a metric, and
nothing knows an evaluator by name: figures are found by role (privjax.metrics.results).

Must not import jax.
"""

from __future__ import annotations

from privjax.metrics import results
from privjax.metrics.results import as_metric, cell

FILE = 'MODEL_CARD.md'
# Keys of a defence's config section that configure sweeps, not the trained model.
_SWEEP_KEYS = ('strength', 'strengths')


def _shape(io: dict) -> str:
  return f'{io["dtype"]}[{", ".join(map(str, io["shape"]))}]'


def _value(v) -> str:
  return f'{v:.4g}' if isinstance(v, float) else f'`{v}`'


def _model_section(manifest: dict, config: dict | None) -> list[str]:
  pixels = manifest['inputs'][0]
  lines = [
      '## Model',
      '',
      f'- architecture `{manifest["arch"]}`, cut after `{manifest["cut"]}`: the layers up to the'
      ' cut run on the device, the rest in the cloud',
      f'- input: {_shape(pixels)}, {pixels["range"]}; output: {_shape(manifest["output"])}',
      f'- checkpoint step {manifest["checkpoint_step"]}',
  ]
  if config is not None:
    lines += [
        f'- trained for {config["total_steps"]} steps, seed {config["seed"]}; the cloud head'
        f' predicts `{config["dataset"]["primary"]}`',
    ]
  return lines


def _data_section(config: dict) -> list[str]:
  d = config['dataset']
  digest = d.get('digest')
  return [
      '## Training data',
      '',
      f'- data set `{d["name"]}` (config `{d["config"]}`), training split `{d["train_split"]}`,'
      f' test split `{d["test_split"]}`',
      (
          f'- content digest `{digest}` (privjax.data.digest: the data the run was trained on)'
          if digest
          else '- no content digest recorded (a data set no privjax builder prepared)'
      ),
  ]


def _defence_section(config: dict, defence: dict | None) -> list[str]:
  name = config['defence']['name']
  settings = {
      k: v for k, v in config['defence'].get(name, {}).items() if k not in _SWEEP_KEYS and v != ''
  }
  lines = ['## Defence', '', f'- `{name}`']
  if settings:
    lines[-1] += ': ' + ', '.join(f'{k} {_value(v)}' for k, v in settings.items())
  learned = {k: v for k, v in (defence or {}).items() if k != 'name'}
  if learned:
    lines.append(
        '- at this checkpoint: ' + ', '.join(f'{k} {_value(v)}' for k, v in learned.items())
    )
  return lines


def _transform_section(manifest: dict) -> list[str]:
  k, clip, variance = manifest['pca_k'], manifest['clip_norm'], manifest['noise_variance']
  return [
      '## Deployed transform',
      '',
      'What the artifact computes after the extractor, on the device, before the upload:',
      '',
      '| step | setting |',
      '|---|---|',
      '| PCA | ' + (f"k = {k}, fitted on the training split's cut features |" if k else 'none |'),
      '| clip of each upload | ' + (f'L2 norm {clip:.4g} |' if clip else 'none |'),
      '| Gaussian noise | '
      + (f'variance {variance:g}, a fresh key per call |' if variance else 'none |'),
  ]


def _transform_spec(manifest: dict) -> str:
  return f'pca:{manifest["pca_k"]}' if manifest['pca_k'] else 'none'


def deployed_setting(report: dict, manifest: dict) -> dict | None:
  """The report's setting that the artifact deploys (its transform and noise variance), or None."""
  spec, variance = _transform_spec(manifest), float(manifest['noise_variance'])
  return next(
      (
          e
          for e in report['settings']
          if e['transform'] == spec and float(e['noise_variance']) == variance
      ),
      None,
  )


def _figure(found) -> str:
  if found is None:
    return '—'
  name, m = found
  return f'{cell(m)} ({m.label or name})'


def _evaluation_section(manifest: dict, report: dict | None, report_path: str | None) -> list[str]:
  lines = ['## Evaluation', '']
  if report is None:
    where = f' (looked for `{report_path}`)' if report_path else ''
    return lines + [
        f'No evaluation found{where}: the figures of what this artifact leaks are unknown.'
        ' `privjax eval --workdir RUN` measures them.'
    ]
  if report['step'] != manifest['checkpoint_step']:
    return lines + [
        f'No evaluation of this checkpoint found: `{report_path}` evaluates step'
        f' {report["step"]}, the artifact is step {manifest["checkpoint_step"]}.'
    ]
  setting = deployed_setting(report, manifest)
  spec = f'{_transform_spec(manifest)}, σ² {manifest["noise_variance"]:g}'
  if setting is None:
    return lines + [
        f"`{report_path}` has no setting of this artifact's transform ({spec}); it evaluated: "
        + ', '.join(f'`{e["name"]}`' for e in report['settings'])
        + '. Evaluate that setting (`--config.transforms`, `--config.noise_variances`).'
    ]
  metrics = setting['metrics']
  lines += [
      f'From `{report_path}` (eval config `{report["eval_config"]["name"]}`, seeds: train'
      f' {report["seeds"]["train"]}, eval {report["seeds"]["eval"]}), at its setting'
      f' `{setting["name"]}`: the transform this artifact deploys.',
      '',
      '| | |',
      '|---|---|',
      f'| {report["primary"]} accuracy, full model (no transform) |'
      f' {cell(report["full_model_accuracy"])} |',
  ]
  for name, m in metrics.items():
    m = as_metric(m)
    if m.role == 'utility':
      lines.append(f'| utility: {m.label or name} | {cell(m)} |')
  for secret in report['secrets']:
    found = results.best(metrics, 'leak', secret=secret)
    lines.append(f'| **{secret}: strongest attack** | {_figure(found)} |')
    many = results.most_uploads(metrics, secret)
    if many is not None:
      lines.append(f'| {secret}: strongest, {many[1].uploads} uploads | {_figure(many)} |')
    raw = results.best(report['once'], 'raw', secret=secret)
    if raw is not None:
      lines.append(f'| {secret}: from the raw photo (reference) | {_figure(raw)} |')
  for name, m in metrics.items():
    m = as_metric(m)
    if m.role == 'guarantee':
      lines.append(f'| {m.label or name} | {cell(m)} |')
  attackers = sorted(
      {as_metric(m).label or n for n, m in metrics.items() if as_metric(m).role == 'leak'}
  )
  lines += [
      '',
      '### Limits',
      '',
      '- The attack figures are the best of the attackers this evaluation ran at this setting: '
      + ('; '.join(attackers) if attackers else 'none')
      + '. An attacker not among them may do better: they show what leaks at least, not at most.',
      '- ± is the binomial standard error over the test examples: the sampling of the test set,'
      ' not run-to-run variation.',
      f'- Measured on the data set above (`{report["train_config"]["dataset"]["name"]}`); photos'
      ' from elsewhere may leak more or less.',
  ]
  return lines


def model_card(
    manifest: dict,
    config: dict | None,
    report: dict | None = None,
    report_path: str | None = None,
    defence: dict | None = None,
) -> str:
  """MODEL_CARD.md's text. `config`: the run's saved config (None: exported from a model object,
  no run); `report`: its evaluation report found at `report_path` (None: none found); `defence`:
  the defence's summary at the exported checkpoint (privjax.evaluate.features.Run.defence)."""
  run = manifest.get('run') or 'a model object'
  lines = [
      f'# Model card: the device-side extractor of {run}',
      '',
      f'Written by privjax {manifest["privjax_version"]} (`privjax export`) beside'
      f' `{manifest["artifact"]}` and `manifest.json`, from the manifest, the run\'s config.json'
      ' and its evaluation report; every figure is copied from those files.',
      '',
      *_model_section(manifest, config),
      '',
  ]
  if config is None:
    lines += ['No run config: the training data, the defence and the evaluation are unknown.', '']
  else:
    lines += [*_data_section(config), '', *_defence_section(config, defence), '']
  lines += _transform_section(manifest) + ['']
  if config is not None:
    lines += _evaluation_section(manifest, report, report_path) + ['']
  return '\n'.join(lines)
