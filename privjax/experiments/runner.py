"""The experiment runner: a plan of runs, each trained (resuming) and evaluated, then their reports.

A plan is a list of `Planned(name, config, init_from, reference)`. `run_plan(workdir, plan,
eval_config)` checks every run's config before the first one trains, trains each run in
`<workdir>/<name>` in the plan's order (`privjax.train.loop.train_and_evaluate`: a finished run
returns at once, a stopped one resumes), then evaluates each with `eval_config` through
`privjax.evaluate.protocol.evaluate` (its report files in `protocol.report_dir`). `init_from` names
an earlier run of the plan whose parameters start this one; `reference` names a run whose features
the evaluation attacks beside this run's (the eval config's `reference_run`).

On a CPU, evaluations run side by side with training and with one another (`eval_workers`): the
plan's first run is evaluated while the next ones train, and the others, two at a time, once that
first evaluation is done (it leaves what later evaluations reuse: the raw-pixel attacks, the face
recogniser's gallery, the reference run's attacks). One evaluation keeps about 1.7 of 2 cores busy
(its compilation, dlib and numpy are single-threaded), so two fill them. The reports are the same
as when run one after another: every evaluation's randomness comes from its own seeds. Stopped
(Ctrl-C, a failed training or evaluation), the job stops an evaluation in progress at its next
evaluator and starts no other. With a `memory_budget_gb`, which bounds one evaluation's memory,
evaluations run one at a time.

`train_run` and `evaluate_run` do the same for one run directory (a run outside the plan, such as
the trained baseline an ablation starts from). Each run's first completed training time is kept in
`<run>/timing.json`, so that a rerun reports it rather than the seconds it took to find the run
finished. The experiments (reproduce, sweep, frontier, the benchmarks' ablation) build plans and
tables; nothing else trains and evaluates several runs.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import os
import time

import ml_collections

from privjax import config as config_lib
from privjax import paths
from privjax.errors import ConfigError, EvalError

TIMING = 'timing.json'
EVAL_WORKERS_ENV = 'PRIVJAX_EVAL_WORKERS'


@dataclasses.dataclass
class Planned:
  """One run of a plan: its name (its folder in the experiment's workdir) and config."""

  name: str
  config: ml_collections.ConfigDict
  init_from: str | None = None  # an earlier run of the plan, by name
  reference: str | None = None  # a run of the plan, by name, attacked beside this one


@dataclasses.dataclass
class Outcome:
  """A planned run after `run_plan`: where it is, its report and what it took (seconds)."""

  name: str
  workdir: str
  report: dict
  report_dir: str
  train_seconds: float
  eval_seconds: float


def check_plan(plan: list[Planned]) -> None:
  """Names unique and known, every config valid: ConfigError (one line) before anything trains."""
  seen = set()
  for p in plan:
    if p.name in seen:
      raise ConfigError(f'the plan names run {p.name} twice')
    if p.init_from is not None and p.init_from not in seen:
      raise ConfigError(f'run {p.name} starts from {p.init_from}, which is not planned before it')
    # Earlier, since its evaluation may start as soon as this run is trained.
    if p.reference is not None and p.reference not in seen:
      raise ConfigError(
          f'run {p.name} is compared with {p.reference}, which is not planned before it'
      )
    seen.add(p.name)
  for p in plan:
    config_lib.validate(p.config.copy_and_resolve_references())


def _read_json(path: str) -> dict:
  return json.loads(paths.as_path(path).read_text())


def train_run(run_dir: str, config) -> float:
  """Trains (or resumes, or finds finished) the run in `run_dir`: its first completed training
  time, in seconds (`timing.json` says whether an evaluation ran beside it)."""
  from privjax.evaluate import protocol
  from privjax.train import loop

  timing_path = paths.join(run_dir, TIMING)
  print(f'== training {paths.as_path(run_dir).name}', flush=True)
  start = time.perf_counter()
  with protocol.busy():  # an evaluation beside it counts its CPU as shared, and this says so
    before = protocol.activity()
    loop.train_and_evaluate(config, run_dir)
    beside_evaluation = protocol.shared_since(before)
  seconds = time.perf_counter() - start
  if paths.as_path(timing_path).exists():
    return _read_json(timing_path)['train_seconds']
  paths.write_atomic(
      timing_path,
      json.dumps({'train_seconds': seconds, 'beside_evaluation': beside_evaluation}),
  )
  return seconds


def evaluate_run(
    run_dir: str, eval_config, *, data_dir: str | None = None, reuse_report: bool = False
) -> tuple[dict, str, float]:
  """(report as written to report.json, its folder, seconds) of the run in `run_dir`;
  `reuse_report`: an existing report of this evaluation at the latest checkpoint is read back, not
  made again (one that is damaged or of another privjax is made again, with a line saying so)."""
  from privjax.evaluate import protocol
  from privjax.report import tables

  out_dir = protocol.report_dir(run_dir, eval_config)  # the latest checkpoint's
  if reuse_report and paths.as_path(paths.join(out_dir, 'report.json')).exists():
    try:
      return tables.load_report(out_dir), out_dir, 0.0
    except EvalError as e:  # damaged, or of another privjax: evaluated again, in place
      print(f'{str(e).split("; ")[0]}; evaluating the run again', flush=True)
  print(f'== evaluating {paths.as_path(run_dir).name}', flush=True)
  start = time.perf_counter()
  _, out_dir = protocol.evaluate(run_dir, eval_config, data_dir=data_dir)
  # As written, so that a fresh report and one read back are the same values.
  return tables.load_report(out_dir), out_dir, time.perf_counter() - start


def eval_workers() -> int:
  """How many evaluations `run_plan` runs at once: $PRIVJAX_EVAL_WORKERS if set (a positive
  integer), else 2 on a CPU with at least 2 cores and 1 on an accelerator, whose memory is sized
  for one evaluation. A job of several processes (multi-host) evaluates one run at a time."""
  import jax

  value = os.environ.get(EVAL_WORKERS_ENV)
  if value is not None:
    if not value.strip().isdigit() or int(value) < 1:
      raise ConfigError(f'{EVAL_WORKERS_ENV} must be a positive integer, got {value!r}')
    workers = int(value)
  elif jax.default_backend() == 'cpu' and (os.cpu_count() or 1) >= 2:
    workers = 2
  else:
    workers = 1
  return 1 if jax.process_count() > 1 else workers


def _train_planned(workdir: str, p: Planned, data_dir: str | None) -> float:
  config = p.config.copy_and_resolve_references()
  if data_dir:
    config.dataset.data_dir = data_dir
  if p.init_from is not None:
    config.init_from = paths.join(workdir, p.init_from)
  return train_run(paths.join(workdir, p.name), config)


def _evaluate_planned(workdir: str, p: Planned, eval_config, data_dir, reuse_reports):
  ec = eval_config.copy_and_resolve_references()
  if p.reference is not None:
    ec.evaluators = (*ec.evaluators, 'reference_run')
    ec.reference_run.workdir = paths.join(workdir, p.reference)
  return evaluate_run(
      paths.join(workdir, p.name), ec, data_dir=data_dir, reuse_report=reuse_reports
  )


def _after(first: concurrent.futures.Future, job):
  from privjax.evaluate import protocol

  first.result()  # raises the first evaluation's error, which then stops the plan
  if protocol.STOP.is_set():
    raise concurrent.futures.CancelledError('the plan stopped')
  return job()


def _side_by_side(workdir, plan, evaluate, workers: int, data_dir, trained: dict) -> list:
  """Trains the runs in turn, each run's evaluation submitted once it is trained (module docstring):
  the evaluations' results in the plan's order."""
  from privjax.evaluate import protocol

  with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix='privjax-eval') as pool:
    jobs = []
    try:
      for p in plan:
        for done in (j for j in jobs if j.done() and not j.cancelled()):
          done.result()  # an evaluation that failed stops the plan before the next training
        trained[p.name] = _train_planned(workdir, p, data_dir)
        job = functools.partial(evaluate, workdir, p)
        jobs.append(pool.submit(_after, jobs[0], job) if jobs else pool.submit(job))
      return [job.result() for job in jobs]
    except BaseException:
      protocol.STOP.set()  # evaluations in progress stop at their next evaluator
      for job in jobs:
        job.cancel()
      if any(job.running() for job in jobs):
        print('stopping the evaluation in progress at its next evaluator', flush=True)
      raise


def run_plan(
    workdir: str,
    plan: list[Planned],
    eval_config,
    *,
    data_dir: str | None = None,
    reuse_reports: bool = False,
) -> list[Outcome]:
  """Every run of `plan` trained, then evaluated: their outcomes in the plan's order.

  `data_dir` replaces each run's data directory (training and evaluation); `reuse_reports` reads
  back the reports that an earlier call wrote instead of evaluating again. With `eval_workers()`
  above 1, evaluations run beside training and beside one another (module docstring).
  """
  from privjax.evaluate import protocol

  check_plan(plan)
  evaluate = functools.partial(
      _evaluate_planned, eval_config=eval_config, data_dir=data_dir, reuse_reports=reuse_reports
  )
  trained, workers = {}, eval_workers()
  if eval_config is not None and eval_config.get('memory_budget_gb'):
    workers = 1  # the budget bounds one evaluation's memory
  if workers == 1:
    for p in plan:
      trained[p.name] = _train_planned(workdir, p, data_dir)
    evaluated = [evaluate(workdir, p) for p in plan]
  else:
    try:
      evaluated = _side_by_side(workdir, plan, evaluate, workers, data_dir, trained)
    finally:
      protocol.STOP.clear()  # no evaluation of this plan runs any more
  return [
      Outcome(p.name, paths.join(workdir, p.name), report, out_dir, trained[p.name], seconds)
      for p, (report, out_dir, seconds) in zip(plan, evaluated)
  ]
