r"""Measure what each cut costs the device and the cloud (FLOPs, memory, upload, latency).

usage: privjax cost --config FILE[:ARGS] [--config.KEY=VALUE ...] [--out DIR] [--pca_k 32]
           [--repeats 50] [--cuts conv4_1,conv5_3] [--reports RUN ...]
       (also privjax-cost, with the same flags)

For every valid cut of the config's architecture (or the --cuts subset), one row: the device's
parameters, FLOPs, peak activation memory and median latency at batch 1 on this machine; the bytes
uploaded per image (float32, float16, int8, and after PCA-k); the cloud's parameters and FLOPs.
Weights are random: sizes and FLOPs depend on shapes alone, so no trained run is needed. Writes
cost.json, cost.md and cost.png to --out (default cost/<arch>/); given evaluated runs (--reports,
or listed after the flags), the plot also shows their accuracy and identity top-1 against the costs.

example: privjax cost --config configs/default.py --config.model.arch=vgg16
"""

from __future__ import annotations

import os

from absl import flags

from privjax import config_args
from privjax.commands import _cli

REQUIRED = ('config',)
TAKES_ARGUMENTS = True  # evaluated runs, as --reports


def measure_and_write(
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
  from privjax import api
  from privjax.cost import analysis, report

  arch, cuts = analysis.check_request(config, pca_k=pca_k, repeats=repeats, cuts=cuts)
  # Reports are read first, so a bad path fails before minutes of timing.
  reports = [api.load_report(p) for p in report_paths]
  points = analysis.evaluation_points(
      reports, [os.path.basename(os.path.normpath(p)) for p in report_paths], arch.name
  )
  rows = []
  for cut in cuts:
    rows.append(
        analysis.cut_cost(config, cut, pca_k=pca_k, repeats=repeats, num_classes=num_classes)
    )
    print(
        f'{cut}: {report.format_si(rows[-1]["extractor_flops"], "FLOPs")}, '
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
      'machine': analysis.machine(),
  }
  paths = report.write(rows, meta, points, out_dir or os.path.join('cost', arch.name))
  return report.markdown(rows, meta, points), paths


def define_flags():
  config_args.DEFINE_config_file('config', None, 'Experiment config file[:args].')
  flags.DEFINE_string('out', None, 'Output directory (default cost/<arch>/).')
  flags.DEFINE_integer('pca_k', 32, 'Components of the PCA upload size.')
  flags.DEFINE_integer('repeats', 50, 'Timed runs per cut (the median is reported).')
  flags.DEFINE_list('cuts', None, 'Only these cuts (default: every valid cut).')
  flags.DEFINE_integer(
      'num_classes', 2, "Classes of the primary task (the head's last layer); 2 for gender."
  )
  flags.DEFINE_multi_string(
      'reports',
      None,
      'Evaluated run workdirs (or report.json files) for the privacy/accuracy panels; repeat the '
      'flag or list them after the flags.',
  )


def main(argv):
  f = flags.FLAGS
  text, paths = _cli.run_or_exit(
      lambda: measure_and_write(
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


def run():
  """The privjax-cost console script."""
  _cli.run_command(__name__)
