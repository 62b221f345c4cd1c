r"""Privacy evaluation of trained runs on their frozen cut features.

  python eval.py --workdir RUN [--config configs/eval/default.py[:args]] [--step N]
  python eval.py --compare RUN_A RUN_B ...      # side-by-side table of evaluated runs

The command lives in privjax/eval_cli.py (installed as `privjax-eval`, same flags). Writes
RUN/eval/<name>/report.json, report.md, privacy_accuracy.png, reconstruction.png (the decoder),
reconstructions.png (originals, decoder, rMLE) and tensorboard/ (results per setting).
What is evaluated: the evaluators named in the eval config (privjax/evaluate/evaluators/).
"""

from privjax import console_cli

if __name__ == '__main__':
  console_cli.evaluate()
