r"""The paper's pipeline end to end: simple fine-tuning, Siamese fine-tuning from it, evaluation.

  python -m privjax.reproduce --workdir runs/demo [--config configs/default.py] \
      [--config_args ''] [--eval_config configs/eval/default.py:fast]

Runs, each in its own sub-directory of --workdir (a rerun resumes whatever is unfinished):
  simple               primary-task training (the non-private baseline)
  siamese              Siamese fine-tuning from `simple`, the paper's margin (contrastive.margin)
  siamese_calibrated   the same with the margin calibrated to the features at the start
then evaluates all three and writes the side-by-side table to --workdir/compare.md.
"""

from __future__ import annotations

import os
import time

from absl import app, flags
from ml_collections import config_flags

from privjax import cli
from privjax import config as config_lib
from privjax.config import ConfigError

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the runs and the comparison.')
_CONFIG = flags.DEFINE_string('config', 'configs/default.py', 'Training config file.')
_CONFIG_ARGS = flags.DEFINE_string(
    'config_args', '', 'Extra comma-separated config arguments ' '(for example "tiny").'
)
_EVAL_CONFIG = config_flags.DEFINE_config_file(
    'eval_config', 'configs/eval/default.py:fast', 'Evaluation config file[:args].'
)
_VARIANTS = flags.DEFINE_list(
    'variants',
    ['simple', 'siamese', 'siamese_calibrated'],
    'Which runs to train and evaluate, in order.',
)
_DATA_DIR = flags.DEFINE_string('data_dir', None, "TFDS data dir (default: the config's).")
flags.mark_flag_as_required('workdir')

# variant → (config arguments, run it starts from)
VARIANTS = {
    'simple': ('simple', None),
    'siamese': ('siamese', 'simple'),
    'siamese_calibrated': ('siamese,calibrated', 'simple'),
    'siamese_normalized': ('siamese,normalized', 'simple'),
}


def load_config(path: str, arg: str):
  if not os.path.exists(path):
    raise FileNotFoundError(f'config file {path} does not exist')
  return config_lib.config_module(path).get_config(arg)


def run_pipeline(
    workdir: str,
    config_path: str,
    config_args: str,
    eval_config,
    variants,
    data_dir: str | None = None,
) -> str:
  from privjax.evaluate import protocol
  from privjax.report import plots, tables
  from privjax.train import loop

  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise ConfigError(f'unknown variant(s) {unknown}; valid: {", ".join(VARIANTS)}')
  timings, reports = {}, []
  for name in variants:
    args, parent = VARIANTS[name]
    config = load_config(config_path, ','.join(a for a in (args, config_args) if a))
    if data_dir:
      config.dataset.data_dir = data_dir
    if parent:
      if parent not in variants:
        raise ConfigError(f'variant {name} starts from {parent}; include {parent} in --variants')
      config.init_from = os.path.join(workdir, parent)
    t0 = time.perf_counter()
    print(f'== training {name}', flush=True)
    loop.train_and_evaluate(config, os.path.join(workdir, name))
    timings[f'train_{name}'] = time.perf_counter() - t0
  for name in variants:
    t0 = time.perf_counter()
    print(f'== evaluating {name}', flush=True)
    ec = eval_config.copy_and_resolve_references()
    if name != 'simple' and 'simple' in variants:
      ec.reference_run = os.path.join(workdir, 'simple')
    report = protocol.evaluate_run(os.path.join(workdir, name), ec, data_dir=data_dir)
    tables.write_report(
        report, os.path.join(workdir, name, 'eval', ec.name), plots.privacy_accuracy_plots
    )
    reports.append(report)
    timings[f'eval_{name}'] = time.perf_counter() - t0
  text = tables.compare_markdown(reports, list(variants))
  plots.privacy_accuracy_plots(reports, workdir, names=list(variants))
  timing = ', '.join(f'{k} {v:.0f} s' for k, v in timings.items())
  text += f'\nWall time: {sum(timings.values()):.0f} s ({timing}).\n'
  with open(os.path.join(workdir, 'compare.md'), 'w') as f:
    f.write(text)
  return text


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  text = cli.run_or_exit(
      lambda: run_pipeline(
          _WORKDIR.value,
          _CONFIG.value,
          _CONFIG_ARGS.value,
          _EVAL_CONFIG.value,
          _VARIANTS.value,
          _DATA_DIR.value,
      )
  )
  print(text)
  print(
      f'reports: {_WORKDIR.value}/<run>/eval/{_EVAL_CONFIG.value.name}/report.md; '
      f'comparison: {_WORKDIR.value}/compare.md; plot: {_WORKDIR.value}/privacy_accuracy.png'
  )


if __name__ == '__main__':
  cli.run_app(main)
