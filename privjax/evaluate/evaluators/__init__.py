"""Evaluators: each kind of privacy evaluation is one module here, chosen by name in the eval config.

`privjax.evaluate.protocol` runs the evaluators named in `eval_config.evaluators`, in that order. A
name without a dot is a module of this package; a dotted name is any importable module (a
project's own evaluator outside privjax). An evaluator module has

  WHERE = 'each' | 'baseline' | 'once'
      where it runs: at every (transform x noise) setting of the sweep, at the baseline setting
      only (untransformed and noiseless, else the first), or once per run after the sweep. A
      `where` field in its settings overrides it.
  Settings                               (optional) a frozen dataclass: its settings and their
                                         defaults, the only place they are written down. The eval
                                         config gets a section per evaluator from it
                                         (`common.config_sections`) and only chooses and overrides.
  STORES = True                          (optional) it can read uploads held in a feature store
                                         (splits over the eval config's memory budget); without it
                                         the evaluation is refused in one line when a split streams.
  check(run, settings, eval_config)      (optional) raise EvalError before any work is done.
  run(ctx, setting, settings) -> {name: privjax.metrics.results.Metric}
                                         `setting` is None for 'once'.

Its metrics are stored as `<evaluator>/<name>`, in the setting's entry of the report or in its
`once` part. A metric's `role` ('utility', 'leak', 'fidelity') is all the report, TensorBoard, the
frontier and `cost` need to know about it: they render every metric by its label and unit, and
judge each setting by the best utility and the strongest leak, whichever evaluator produced them.
`ctx` (common.Context) holds the run, the eval config, the frozen features of every split, raw
images, the attack helper with its memo, and places for details, pictures and reconstructions that
later evaluators read; `setting` (privjax.evaluate.sources.Setting) gives what the cloud receives
from each split (`setting.uploaded(split)`).

Adding an evaluator = one module here; nothing else names it (tests/test_evaluators.py checks
that). Every source file here is part of the attack memo's key (privjax.evaluate.memo).
"""
