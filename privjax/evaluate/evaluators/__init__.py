"""Evaluators: each kind of privacy evaluation is one module here, chosen by name in the eval config.

`evaluate_run` (privjax.evaluate.protocol) runs the evaluators named in `eval_config.evaluators`, in
that order. A name without a dot is the module `privjax.evaluate.evaluators.<name>`; a dotted name
is any importable module (a project's own evaluator outside privjax). An evaluator module has

  SETTINGS = 'each' | 'baseline' | 'once'
      where it runs: at every (transform x noise) setting of the sweep, at the baseline setting only
      (untransformed and noiseless, else the first), or once per run after the sweep. Results of
      'each' and 'baseline' go into the setting's entry of `report['sweep']`, results of 'once' into
      the report itself. A section of its own with a `settings` key overrides it (e.g.
      `open_set.settings = 'each'`).
  enabled(eval_config) -> bool          (optional; default: its section's `enabled`, if any, else on)
  check(run, eval_config) -> None       (optional; raise EvalError before any work is done)
  run(ctx, setting) -> dict              the named results (`setting` is None for 'once')

Its settings are the config section named like the module's last component (`eval_config.<name>`),
and its results are a dict of new report keys: two evaluators returning one key is an error. The
report renders every evaluator's results (`report['evaluators']` lists who produced which keys); the
original evaluators keep the report keys they had before they were plug-ins. `ctx` is a
`common.Context` (the run, the eval config, the frozen features of every split, raw images, the
attack helper with its memo, the output folder) and `setting` a `common.Setting` (the transform, the
noise variance, the uploaded features of every split). Evaluators that run later may read what
earlier ones left in `ctx.store` (the reconstruction methods' images, for re-identification).

Adding an evaluator = one module here plus its section in configs/eval/default.py (and its name in
`evaluators` there); nothing else needs to know its name. Any source file here is part of the
attack memo's key (privjax.evaluate.memo).

Built in, in the default order: `head` (utility of the cloud head), `probe` (a fresh primary-task
probe), `attackers` (the attacker families on each secret), `rank_privacy`, `open_set` (open-set
identity with a learned embedding), `pixel_reference`, `reference_run`, `reconstruction` (the
learned decoder), `inversion` (white-box rMLE) and `reidentify` (re-identification of the
reconstructions).
"""
