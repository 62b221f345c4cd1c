r"""The cost command: `python -m privjax.cost --config CONFIG` (privjax.cost runs this module), or
`privjax-cost` with the same flags.

  python -m privjax.cost --config configs/default.py [--config.model.arch=vgg16] [--out DIR] \
      [--pca_k 32] [--repeats 50] [--cuts conv4_1,conv5_3] [--reports RUN_DIR ...]

Measures every valid cut (or the `--cuts` subset; see `privjax.cost` for what a row holds) and
writes cost.json, cost.md and cost.png to --out (default cost/<arch>/); given evaluated runs
(`--reports`), the plot also shows their accuracy and identity top-1 against the costs.
"""

from __future__ import annotations

import os

from absl import app, flags

from privjax import cli, config_args, cost, cost_report
from privjax.report import tables


def run(
    config,
    *,
    out_dir: str | None,
    pca_k: int,
    repeats: int,
    cuts,
    num_classes: int,
    report_paths: list[str],
) -> tuple[str, dict[str, str]]:
  """Everything the command does; returns (markdown, written paths)."""
  arch, cuts = cost.check_request(config, pca_k=pca_k, repeats=repeats, cuts=cuts)
  # Reports are read first, so a bad path fails before minutes of timing.
  reports = [tables.load_report(p) for p in report_paths]
  points = cost.evaluation_points(
      reports, [os.path.basename(os.path.normpath(p)) for p in report_paths], arch.name
  )
  rows = []
  for cut in cuts:
    rows.append(cost.cut_cost(config, cut, pca_k=pca_k, repeats=repeats, num_classes=num_classes))
    print(
        f'{cut}: {cost_report.format_si(rows[-1]["extractor_flops"], "FLOPs")}, '
        f'{rows[-1]["latency_ms"]:.3g} ms',
        flush=True,
    )
  meta = {
      'arch': arch.name,
      'image_size': arch.image_size,
      'dtype': config.model.dtype,
      'pca_k': pca_k,
      'repeats': repeats,
      'num_classes': num_classes,
      'batch_size': 1,
      'weights': 'random (He-scaled normal), no checkpoint',
      'machine': cost.machine(),
  }
  paths = cost_report.write(rows, meta, points, out_dir or os.path.join('cost', arch.name))
  return cost_report.markdown(rows, meta, points), paths


def define_flags():
  """The command's flags; defined only when run as a program, so importing this module in a process
  that has other entry points' flags (tests, notebooks) cannot clash with them."""
  config_args.DEFINE_config_file('config', None, 'Experiment config file[:args].')
  flags.DEFINE_string('out', None, 'Output directory (default cost/<arch>/).')
  flags.DEFINE_integer('pca_k', 32, 'Components of the PCA upload size.')
  flags.DEFINE_integer('repeats', 50, 'Timed runs per cut (the median is reported).')
  flags.DEFINE_list('cuts', None, 'Only these cuts (default: every valid cut).')
  flags.DEFINE_integer(
      'num_classes', 2, "Classes of the primary task (the head's last layer); " '2 for gender.'
  )
  flags.DEFINE_multi_string(
      'reports',
      None,
      'Evaluated run workdirs (or report.json files) for '
      'the privacy/accuracy panels; repeat the flag or list them after it.',
  )


def main(argv):
  f = flags.FLAGS
  if not f.config:
    raise app.UsageError('give --config configs/default.py[:args]')
  text, paths = cli.run_or_exit(
      lambda: run(
          f.config,
          out_dir=f.out,
          pca_k=f.pca_k,
          repeats=f.repeats,
          cuts=f.cuts,
          num_classes=f.num_classes,
          report_paths=list(f.reports or []) + list(argv[1:]),
      )
  )
  print(text)
  print('\n'.join(f'{k}: {v}' for k, v in paths.items()))


def run_command():
  define_flags()
  cli.run_app(main)


if __name__ == '__main__':
  run_command()
