r"""Privacy evaluation of trained runs on their frozen cut features.

  python eval.py --workdir RUN [--config configs/eval/default.py[:args]] [--step N]
  python eval.py --compare RUN_A RUN_B ...      # side-by-side table of evaluated runs

The command lives in privjax/eval_cli.py (installed as `privjax-eval`, same flags). Writes
RUN/eval/<name>/report.json, report.md, privacy_accuracy.png and reconstruction.png.
"""

from privjax import console_cli

if __name__ == '__main__':
  console_cli.evaluate()
