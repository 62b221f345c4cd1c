"""Benchmark: streaming evaluation at full LFW size, stage by stage, under a peak-RSS cap.

    nice -n 19 python -m benchmarks.streaming_eval_full

An LFW-sized split (13,233 rows, 80% attacker-train / 20% attacker-test) of VGG-16 ``conv4_3``
features (28 x 28 x 512 = 401,408 dims), written directly as synthetic float16 shards with a
planted class structure (``--classes`` class means in a rank-32 subspace, a rank-4 nuisance, noise
rows drawn from a pool of 256 Gaussian rows and cyclically shifted, offset, ReLU): 10.6 GB on
disk. Each stage runs in its own
child process, whose peak resident set (VmHWM) is compared with ``--cap-gb``; the attackers get
``memory_budget = --budget-gb``:

1. ``write``: generating and writing the shards.
2. ``pca``: ``streaming.fit_randomized_pca`` (the randomized PCA over row batches, ``--pca-k``
   components, ``--n-iter`` power iterations) of the attacker-train rows and the codes of all rows
   (``2 + 2 n_iter`` passes over the train rows and one over all rows); then ``pca_linear``: the
   linear attacker on the codes (PCA size ``--pca-k``, whitened or not, chosen on val; L-BFGS capped
   at ``--max-iter``). A Gram-matrix PCA (N^2 D = 7e13 multiply-adds) does not fit the time limit.
3. ``streaming_linear``: minibatch Adam on the raw 401k dims. One epoch at 600 classes is
   ~1.5e13 FLOP, beyond the time limit on two shared cores, so ``--linear-steps`` steps are timed
   (after the standardizer's pass, which is timed too) and an epoch and a fit extrapolated from them.
4. ``inmemory``: at ``--inmemory-dims`` (where the features fit), the in-memory PCA
   (``privjax.privacy.pca.fit_pca``) + ``pca_linear`` against the streaming PCA + the same fits, same rows.
5. ``extract``: VGG-16 to ``conv4_3`` (random weights, 224 x 224, jit) on as many batches of
   ``--extract-batch`` images as fit ``--extract-seconds``; extrapolated to 13,233 images.

Every stage has a wall-clock budget (``--stage-minutes``); a stage that runs past it is stopped, and
what it finished (per-pass progress lines with their times and peak RSS) is reported with an
extrapolation, marked as such. The file records the command (with its niceness), the load average
and the CPU seconds of each stage. The store is deleted at the end. Writes ``--out`` (default
benchmarks/results/streaming_eval_full.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import streaming_eval as base

FULL_DIMS = base.FULL_DIMS
L2 = base.L2


def _emit(**record):
  """A progress line on stdout: the stage's finished parts, with time, CPU time and peak RSS."""
  record.update(
      t=time.perf_counter() - _T0, cpu=base._cpu_seconds(), rss_gb=base._max_rss() / 2**30
  )
  print("@@" + json.dumps(record), flush=True)


_T0 = time.perf_counter()


def _split(store):
  y = store.labels("identity")
  n_train = int(round(0.8 * store.num_rows))
  return y, np.arange(n_train), np.arange(n_train, store.num_rows)


def write_synthetic(path, rows, dims, classes, seed, chunk=128, pool=256):
  """``streaming_eval.write_synthetic``'s planted structure, with its i.i.d. noise replaced by rows
  of a pool of ``pool`` Gaussian noise rows, each drawn at random and cyclically shifted by a random
  offset: drawing 5.3e9 normals is most of the generation's CPU time, a shifted copy is not."""
  from privjax.attacks import shards

  rng = np.random.default_rng(seed)
  y = rng.integers(0, classes, rows)
  rank = 32
  means = rng.normal(size=(classes, rank)).astype(np.float32)
  basis = (rng.normal(size=(rank, dims)) / np.sqrt(rank)).astype(np.float32)
  nuisance = (rng.normal(size=(4, dims)) * 3).astype(np.float32)
  noise = rng.standard_normal((pool, dims), dtype=np.float32)
  shape = base.CONV4_3 if dims == FULL_DIMS else (dims,)
  with shards.ShardWriter(path, shape, dtype="float16", shard_bytes=256 << 20) as w:
    for s in range(0, rows, chunk):
      m = min(chunk, rows - s)
      z = means[y[s : s + m]] + rng.standard_normal((m, rank), dtype=np.float32)
      x = z @ basis + rng.standard_normal((m, 4), dtype=np.float32) @ nuisance
      for i, (r, shift) in enumerate(zip(rng.integers(0, pool, m), rng.integers(0, dims, m))):
        x[i, shift:] += noise[r, : dims - shift]
        x[i, :shift] += noise[r, dims - shift :]
      x += 1.0
      np.maximum(x, 0.0, out=x)
      w.write(x, identity=y[s : s + m])
      if s % (chunk * 16) == 0:
        _emit(part="rows", rows=s + m)
  return shards.FeatureStore(str(path))


def stage_write(args):
  write_synthetic(Path(args.store), args.rows, args.dims, args.classes, seed=0)
  _emit(part="written")


def stage_pca(args):
  from privjax.attacks import shards, streaming

  store = shards.FeatureStore(args.store)
  y, tr, te = _split(store)
  budget = int(args.budget_gb * (1 << 30))
  _emit(part="start", batch_rows=streaming.randomized_pca_plan(store, tr, args.pca_k, budget)[1])
  r = streaming.run_streaming_attack(
      "streaming_pca_linear",
      store,
      y[tr],
      y[te],
      tr,
      te,
      memory_budget=budget,
      sizes=(args.pca_k,),
      method="randomized",
      n_iter=args.n_iter,
      max_iter=args.max_iter,
      progress=lambda stage: _emit(part=stage),
  )
  _emit(
      part="scored",
      top1=r.top1,
      top1_se=r.top1_se,
      pca_k=r.extra["pca_k"],
      whiten=r.extra["whiten"],
      converged=r.extra.get("converged"),
      pca_seconds=r.extra["pca_seconds"],
  )


def stage_linear(args):
  import jax.numpy as jnp

  from privjax.attacks import common, shards, streaming

  store = shards.FeatureStore(args.store)
  y, tr, _ = _split(store)
  budget = int(args.budget_gb * (1 << 30))
  class_map = common.make_class_map(y[tr])
  yy = class_map.encode(y[tr])
  k = class_map.num_classes
  model_bytes = (k + 1) * store.dim * streaming._MODEL_BYTES_PER_PARAM
  batch = int(min(128, streaming._batch_rows(store, budget, model_bytes, 8)))  # its default
  stat_rows = min(tr.size, streaming._batch_rows(store, budget, model_bytes))
  _emit(part="start", batch_rows=batch, classes=k)
  # The same step function fit_streaming_linear runs, for --linear-steps steps. A unit
  # standardizer: a step costs the same with any; its own pass is timed after the steps.
  import optax

  total = args.linear_steps
  opt = optax.adam(optax.cosine_decay_schedule(0.3 / np.sqrt(store.dim), 10 * total))
  params = (jnp.zeros((1, k, store.dim), jnp.float32), jnp.zeros((1, k), jnp.float32))
  opt_state = opt.init(params)
  mean, std = jnp.zeros(store.dim, jnp.float32), jnp.ones(store.dim, jnp.float32)
  l2s = jnp.asarray([L2], jnp.float32)
  it = store.batches(tr, batch, shuffle_seed=0)
  for step in range(total):
    pos, x = next(it)
    xb, yb, mb = streaming._pad(x, yy[pos], batch)
    params, opt_state, per = streaming._train_step(
        params, opt_state, xb, yb, mb, mean, std, l2s, opt=opt
    )
    per.block_until_ready()
    _emit(part="step", step=step + 1, loss=float(per[0]))
  streaming.fit_streaming_standardizer(store, tr, stat_rows)
  _emit(part="standardizer", stat_rows=stat_rows)


def stage_inmemory(args):
  from privjax.attacks import registry, shards, streaming

  store = shards.FeatureStore(args.store)
  y, tr, te = _split(store)
  kw = {"sizes": (args.pca_k,), "max_iter": args.max_iter}
  if args.which == "memory":
    x = store.rows(np.arange(store.num_rows)).astype(np.float32)
    _emit(part="loaded")
    r = registry.run_attack("pca_linear", x[tr], y[tr], x[te], y[te], **kw)
  else:
    r = streaming.run_streaming_attack(
        "streaming_pca_linear",
        store,
        y[tr],
        y[te],
        tr,
        te,
        memory_budget=int(args.budget_gb * (1 << 30)),
        method="randomized",
        n_iter=args.n_iter,
        **kw,
    )
  _emit(part="scored", top1=r.top1, top1_se=r.top1_se, pca_k=r.extra["pca_k"])


def stage_extract(args):
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from privjax import models

  model = models.SplitModel("vgg16", "conv4_3", 2, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model.extractor)

  @jax.jit
  def extract(params, x):
    return nnx.merge(graphdef, params)(x)

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.integers(0, 256, (args.extract_batch, 224, 224, 3)), jnp.float32)
  extract(params, x).block_until_ready()
  _emit(part="compiled")
  images = 0
  while True:
    out = extract(params, x)
    out.block_until_ready()
    images += args.extract_batch
    assert out.shape[1:] == base.CONV4_3, out.shape
    _emit(part="batch", images=images)


STAGES = {
    "write": stage_write,
    "pca": stage_pca,
    "streaming_linear": stage_linear,
    "inmemory": stage_inmemory,
    "extract": stage_extract,
}


def run_stage(args, name, minutes, **extra) -> dict:
  cmd = [sys.executable, "-m", __spec__.name, "--child", name]
  for key in (
      "store", "rows", "dims", "classes", "budget_gb", "pca_k", "n_iter", "max_iter",
      "linear_steps", "extract_batch",
  ):  # fmt: skip
    value = extra.get(key, getattr(args, key))
    cmd += [f"--{key.replace('_', '-')}", str(value)]
  if "which" in extra:
    cmd += ["--which", extra["which"]]
  print("+", " ".join(cmd), flush=True)
  start = time.perf_counter()
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    out, err = proc.communicate(timeout=minutes * 60)
    stopped = False
  except subprocess.TimeoutExpired:
    proc.kill()
    out, err = proc.communicate()
    stopped = True
  lines = [json.loads(s[2:]) for s in out.splitlines() if s.startswith("@@")]
  record = {
      "stage": name,
      "wall": time.perf_counter() - start,
      "stopped_at_budget": stopped,
      "returncode": proc.returncode,
      "progress": lines,
      **{k: v for k, v in extra.items() if k == "which"},
  }
  if proc.returncode and not stopped:
    record["error"] = err.strip().splitlines()[-3:]
  print(json.dumps(record)[:2000], flush=True)
  return record


def _peak(r):
  return max((p["rss_gb"] for p in r["progress"]), default=float("nan"))


def _last(r, part=None):
  ps = [p for p in r["progress"] if part is None or p["part"] == part]
  return ps[-1] if ps else None


def report(args, records, command, started, load_before, store_gb, load_after) -> list[str]:
  rec = {r["stage"] + (":" + r["which"] if "which" in r else ""): r for r in records}
  n_train = int(round(0.8 * args.rows))
  lines = [
      "# Streaming evaluation at VGG-16 conv4_3 scale, full size",
      "",
      f"Command: `{command}`  ",
      f"Started {started} on {platform.node()} ({os.cpu_count()} CPUs): load average "
      f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (1-minute). Wall times are those of "
      "the command above on that machine (CPU seconds beside them: other jobs lengthen the wall "
      "times, not these); peak RSS is the child process's own VmHWM, unaffected by the load.",
      "",
      f"Store: {args.rows:,} rows x {args.dims:,} dims float16 ({store_gb:.2f} GB), {args.classes} "
      f"identity classes, {n_train:,} attacker-train / {args.rows - n_train:,} attacker-test rows. "
      f"Attackers' `memory_budget` {args.budget_gb} GB, cap {args.cap_gb} GB (measured, not "
      "imposed: RLIMIT_AS aborts XLA's threads whatever the code does).",
      "",
      "| stage | wall s | CPU s | peak RSS GB | under the cap | result |",
      "|---|---|---|---|---|---|",
  ]

  def row(name, r, result):
    if r is None:
      return f"| {name} | not run | | | | |"
    last = _last(r)
    cpu = last["cpu"] if last else float("nan")
    peak = _peak(r)
    note = " (stopped at its time budget)" if r["stopped_at_budget"] else ""
    if "error" in r:
      result = "failed: " + " ".join(r["error"])
    if not r["progress"]:  # killed before its first progress line: nothing was measured
      return f"| {name} | {r['wall']:.0f}{note} | n/a | n/a | n/a | {result} |"
    return (
        f"| {name} | {r['wall']:.0f}{note} | {cpu:.0f} | {peak:.2f} | "
        f"{'yes' if peak <= args.cap_gb else 'NO'} | {result} |"
    )

  w = rec.get("write")
  lines.append(row("shard write (synthetic generation included)", w, f"{store_gb:.2f} GB written"))
  p = rec.get("pca")
  if p is not None:
    pca_done, fit_done, scored = _last(p, "pca"), _last(p, "fit"), _last(p, "scored")
    t_pca = pca_done["t"] if pca_done else None
    lines.append(
        row(
            f"randomized PCA fit (k={args.pca_k}, n_iter={args.n_iter}) + codes of all rows",
            {**p, "progress": [q for q in p["progress"] if q["part"] == "pca"]} if pca_done else p,
            f"{t_pca:.0f} s in the child" if t_pca else "did not finish",
        )
    )
    passes = [q for q in p["progress"] if q["part"] == "pass"]
    want = 2 + 2 * args.n_iter
    batches = [q for q in p["progress"] if q["part"] == "batch"]
    start = _last(p, "start")
    if not pca_done and not passes and len(batches) >= 2 and start:
      # Batches of the first pass, after the first (which includes jax's import and the test
      # matrix's generation).
      per = (batches[-1]["t"] - batches[0]["t"]) / (len(batches) - 1)
      per_cpu = (batches[-1]["cpu"] - batches[0]["cpu"]) / (len(batches) - 1)
      per_pass = -(-n_train // start["batch_rows"])
      total = per_pass * (want + 1.25)
      lines.append(
          f"| randomized PCA: {len(batches)} batches of {start['batch_rows']} rows of the first "
          f"pass finished (measured) | {batches[-1]['t']:.0f} | {batches[-1]['cpu']:.0f} | "
          f"{_peak(p):.2f} | {'yes' if _peak(p) <= args.cap_gb else 'NO'} | **extrapolated**: "
          f"{per:.0f} s ({per_cpu:.0f} CPU s) per batch, {per_pass} batches a pass, {want} passes "
          f"+ the codes pass: ~{per * total / 60:.0f} min wall here, ~{per_cpu * total / 60:.0f} "
          "CPU min |"
      )
    if not pca_done and len(passes) >= 1:
      # Pass times in the child, from its start (the first includes jax's import).
      per = passes[-1]["t"] / len(passes)
      per_cpu = passes[-1]["cpu"] / len(passes)
      lines.append(
          f"| randomized PCA: {len(passes)} of {want} passes over the train rows finished "
          f"(measured) | {passes[-1]['t']:.0f} | {passes[-1]['cpu']:.0f} | {_peak(p):.2f} | "
          f"{'yes' if _peak(p) <= args.cap_gb else 'NO'} | **extrapolated**: the {want} passes "
          f"+ the codes pass ~{per * (want + 1.25) / 60:.0f} min wall here, "
          f"~{per_cpu * (want + 1.25) / 60:.1f} CPU min |"
      )
    if pca_done and not fit_done:
      lines.append(
          f"| pca_linear on the codes (L-BFGS, max_iter {args.max_iter}) | "
          f"{p['wall'] - pca_done['t']:.0f}+ (stopped at its time budget) | | {_peak(p):.2f} | "
          f"{'yes' if _peak(p) <= args.cap_gb else 'NO'} | did not finish: 600-class L-BFGS fits "
          "on the codes, in memory |"
      )
    if fit_done and scored:
      lines.append(
          f"| pca_linear on the codes (L-BFGS, max_iter {args.max_iter}) | "
          f"{fit_done['t'] - t_pca:.0f} | {fit_done['cpu'] - pca_done['cpu']:.0f} | "
          f"{_peak(p):.2f} | {'yes' if _peak(p) <= args.cap_gb else 'NO'} | top-1 "
          f"{100 * scored['top1']:.1f} ± {100 * scored['top1_se']:.1f}% (PCA-{scored['pca_k']}"
          f"{' whitened' if scored['whiten'] else ''}; converged {scored['converged']}) |"
      )
  s = rec.get("streaming_linear")
  if s is not None:
    steps = [q for q in s["progress"] if q["part"] == "step"]
    std = _last(s, "start")
    st = _last(s, "standardizer")
    lines.append(
        row(
            "streaming_linear: standardizer pass (after the steps)",
            {**s, "progress": [st]} if st else s,
            f"{st['t'] - steps[-1]['t']:.0f} s wall" if st and steps else "did not finish",
        )
    )
    if len(steps) >= 2:
      # The first step compiles; time the rest.
      per = (steps[-1]["t"] - steps[0]["t"]) / (len(steps) - 1)
      per_cpu = (steps[-1]["cpu"] - steps[0]["cpu"]) / (len(steps) - 1)
      batch = std["batch_rows"]
      epoch_steps = -(-n_train // batch)
      lines.append(
          f"| streaming_linear: {len(steps)} Adam steps of {batch} rows (measured) | "
          f"{steps[-1]['t'] - std['t']:.0f} | {steps[-1]['cpu'] - std['cpu']:.0f} | {_peak(s):.2f} | "
          f"{'yes' if _peak(s) <= args.cap_gb else 'NO'} | {per:.1f} s per step wall, {per_cpu:.1f} "
          "CPU s |"
      )
      lines += [
          "",
          f"streaming_linear, **extrapolated** from the {len(steps) - 1} timed steps (the first "
          "compiles; the steps use a unit standardizer, which costs the same as the fitted one, so "
          "their losses mean nothing): "
          f"an epoch is {epoch_steps} steps, ~{per * epoch_steps / 60:.0f} min wall "
          f"here (~{per_cpu * epoch_steps / 60:.0f} CPU min); the default fit (30-epoch cycles "
          "until the suboptimality bound is within 1e-2, up to 120 epochs, plus a gradient pass "
          f"per cycle) is ~{30 * per * epoch_steps / 3600:.1f}-{120 * per * epoch_steps / 3600:.1f} "
          "h wall at this rate. Memory does not grow with epochs: the model (weights, two Adam "
          "moments, gradient) and one batch are all it holds, which the peak RSS above includes.",
      ]
  inmemory = [key for key in rec if key.startswith("inmemory")]
  if inmemory:
    lines.append("")
    lines.append(
        f"### In memory against streaming where the features fit ({args.inmemory_dims:,} dims)"
    )
    lines.append("")
    lines.append("| path | wall s | CPU s | peak RSS GB | top-1 % |")
    lines.append("|---|---|---|---|---|")
  for key, label in (
      ("write:small", "shard write"),
      ("inmemory:memory", "in memory: load + pca.fit_pca + pca_linear"),
      ("inmemory:streaming", "streaming: randomized PCA over shards + pca_linear"),
  ):
    r = rec.get(key)
    if r is None:
      continue
    last, sc = _last(r), _last(r, "scored")
    res = f"{100 * sc['top1']:.1f} ± {100 * sc['top1_se']:.1f} (PCA-{sc['pca_k']})" if sc else ""
    if "error" in r:
      res = "failed: " + " ".join(r["error"])
    if r["stopped_at_budget"]:
      res += " stopped at its time budget"
    lines.append(
        f"| {label} | {r['wall']:.0f} | {last['cpu'] if last else float('nan'):.0f} | "
        f"{_peak(r):.2f} | {res} |"
    )
  e = rec.get("extract")
  if e is not None:
    batches = [q for q in e["progress"] if q["part"] == "batch"]
    comp = _last(e, "compiled")
    lines += ["", "### Feature extraction (VGG-16 to conv4_3, 224 x 224, random weights, jit)", ""]
    if batches and comp:
      secs = batches[-1]["t"] - comp["t"]
      cpu = batches[-1]["cpu"] - comp["cpu"]
      images = batches[-1]["images"]
      lines.append(
          f"{images} images (batches of {args.extract_batch}) in {secs:.0f} s wall, {cpu:.0f} CPU s "
          f"after a {comp['t']:.0f} s compile: {secs / images:.2f} s per image here, so "
          f"**~{secs / images * args.rows / 3600:.1f} h for {args.rows:,} images (extrapolated)**; "
          f"by CPU time {cpu / images:.2f} CPU s per image, ~{cpu / images * args.rows / 3600 / 2:.1f}"
          " h on two idle cores. Peak RSS {:.2f} GB.".format(_peak(e))
      )
    else:
      lines.append("No batch finished within the stage's budget.")
  lines.append("")
  lines.append(
      "The stage records (progress lines with times, CPU seconds and peak RSS) are in the JSON file "
      "beside this one; `--render` re-renders this file from it."
  )
  return lines


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--rows", type=int, default=base.LFW_ROWS)
  p.add_argument("--dims", type=int, default=FULL_DIMS)
  p.add_argument("--classes", type=int, default=600)
  p.add_argument("--budget-gb", type=float, default=6.0)
  p.add_argument("--cap-gb", type=float, default=8.0)
  p.add_argument("--pca-k", type=int, default=128)
  p.add_argument("--n-iter", type=int, default=1)
  p.add_argument("--max-iter", type=int, default=100)
  p.add_argument("--linear-steps", type=int, default=6)
  p.add_argument("--inmemory-dims", type=int, default=16384)
  p.add_argument("--extract-batch", type=int, default=8)
  p.add_argument(
      "--stage-minutes", default="write=9,pca=7,streaming_linear=4,inmemory=1.5,extract=3"
  )
  p.add_argument("--store-dir", default="streaming_eval_full_stores")
  p.add_argument("--out", default="benchmarks/results/streaming_eval_full.md")
  p.add_argument("--overwrite", action="store_true")
  p.add_argument("--skip", default="inmemory", help="comma list of: " + ", ".join(STAGES))
  p.add_argument("--child", help=argparse.SUPPRESS)
  p.add_argument("--store", help=argparse.SUPPRESS)
  p.add_argument("--which", help=argparse.SUPPRESS)
  p.add_argument("--render", help="re-render --out from a run's JSON record file, run nothing")
  args = p.parse_args()
  if args.child:
    STAGES[args.child](args)
    return
  if args.render:
    saved = json.loads(Path(args.render).read_text())
    run_args = argparse.Namespace(**{**vars(args), **saved["args"]})
    store_gb = run_args.rows * run_args.dims * 2 / 2**30
    lines = report(
        run_args,
        saved["records"],
        saved["command"],
        saved["started"],
        saved["load_before"],
        store_gb,
        saved["load_after"],
    )
    lines.insert(
        3,
        f"Rendered from `{args.render}` by `python -m benchmarks.streaming_eval_full "
        f"--render {args.render} --out {args.out}`.  ",
    )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return
  if os.path.exists(args.out) and not args.overwrite:
    sys.exit(f"error: {args.out} exists; pass --overwrite or another --out")
  minutes = {k: float(v) for k, v in (s.split("=") for s in args.stage_minutes.split(","))}
  skip = set(filter(None, args.skip.split(",")))
  root = Path(args.store_dir)
  if root.exists():
    sys.exit(f"error: {root} exists; the benchmark writes its stores there and deletes them")
  niceness = os.nice(0)
  prefix = f"nice -n {niceness} " if niceness else ""
  command = f"{prefix}python -m benchmarks.streaming_eval_full {' '.join(sys.argv[1:])}"
  started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
  load_before = os.getloadavg()
  records = []
  store_gb = args.rows * args.dims * 2 / 2**30
  big, small = str(root / "big"), str(root / "small")
  try:
    if "write" not in skip:
      records.append(run_stage(args, "write", minutes["write"], store=big))
    if os.path.exists(os.path.join(big, "store.json")):
      if "pca" not in skip:
        records.append(run_stage(args, "pca", minutes["pca"], store=big))
      if "streaming_linear" not in skip:
        records.append(run_stage(args, "streaming_linear", minutes["streaming_linear"], store=big))
      shutil.rmtree(big)
    if "inmemory" not in skip:
      r = run_stage(args, "write", minutes["inmemory"], store=small, dims=args.inmemory_dims)
      r["which"] = "small"
      records.append(r)
      if os.path.exists(os.path.join(small, "store.json")):
        for which in ("memory", "streaming"):
          records.append(run_stage(args, "inmemory", minutes["inmemory"], store=small, which=which))
    if "extract" not in skip:
      records.append(run_stage(args, "extract", minutes["extract"]))
  finally:
    if root.exists():
      shutil.rmtree(root)
  load_after = os.getloadavg()
  lines = report(args, records, command, started, load_before, store_gb, load_after)
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text("\n".join(lines) + "\n")
  saved = {
      "command": command,
      "started": started,
      "load_before": load_before,
      "load_after": load_after,
      "args": {k: v for k, v in vars(args).items() if k not in ("render", "out", "overwrite")},
      "records": records,
  }
  Path(args.out).with_suffix(".json").write_text(json.dumps(saved, indent=1) + "\n")
  print("\n".join(lines))
  print(json.dumps(records))


if __name__ == "__main__":
  main()
