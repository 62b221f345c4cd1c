"""Benchmark: the streaming attackers at VGG-16 conv4_3 scale, against the in-memory ones where they fit.

    nice -n 10 python -m benchmarks.streaming_eval                  # full size (~10.6 GB store)
    nice -n 10 python -m benchmarks.streaming_eval --dims 16384     # scaled down, extrapolated

The setting: an LFW-sized split (13,233 rows, 80% attacker-train, 20% attacker-test) of
VGG-16 ``conv4_3`` features (28 x 28 x 512 = 401,408 dims), written directly as synthetic float16
shards (class means in a rank-32 subspace, a strong rank-4 nuisance, noise, offset, ReLU; labels
``identity`` of ``--classes`` classes): a VGG-16 forward pass over 13k images takes hours on two
cores, so the extraction is timed on ``--extract-images`` random images instead and extrapolated.

Every attacker runs in its own child process (so its peak resident set, ``VmHWM``, is its own):
``streaming_linear`` (minibatch Adam, one ``l2``) and ``streaming_pca_linear`` (Gram-matrix PCA,
sizes 32/128/512 with and without whitening chosen on val) with ``memory_budget = --budget-gb``,
their peak resident set checked against ``--cap-gb`` (an address-space limit, RLIMIT_AS, aborts
XLA's lazily started threads whatever the attacker does, so the cap is measured, not imposed); then, on a store of the same rows
and ``--inmemory-dims`` dimensions (where the features fit), the in-memory ``linear`` (L-BFGS,
the same ``l2``) and ``pca_linear`` next to the streaming families on that store. Wall times on
this machine are those of a shared, niced process; the results file records the load average.

When ``--dims`` is below 401,408 the report extrapolates to it: the streaming linear attacker's
and the Gram pass's cost grow linearly in D (every pass reads and multiplies N x D values), the
eigen-decompositions and the fits on the codes do not depend on D. The stores are deleted at the
end (``--keep`` keeps them). Writes ``--out`` (default benchmarks/results/streaming_eval.md) and
refuses to overwrite it unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONV4_3 = (28, 28, 512)
FULL_DIMS = 28 * 28 * 512
LFW_ROWS = 13_233
L2 = 1e-2


def _max_rss() -> int:
  """This process's own peak resident set (VmHWM): ru_maxrss carries the parent's over fork+exec."""
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


def _cpu_seconds() -> float:
  """User + system CPU time of this process: on a shared machine, what the work itself cost."""
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def write_synthetic(path, rows, dims, classes, seed, chunk=256, shard_mb=256):
  from privjax.attacks import shards

  rng = np.random.default_rng(seed)
  y = rng.integers(0, classes, rows)
  rank = 32
  means = rng.normal(size=(classes, rank)).astype(np.float32)
  basis = (rng.normal(size=(rank, dims)) / np.sqrt(rank)).astype(np.float32)
  nuisance = (rng.normal(size=(4, dims)) * 3).astype(np.float32)
  shape = CONV4_3 if dims == FULL_DIMS else (dims,)
  with shards.ShardWriter(path, shape, dtype="float16", shard_bytes=shard_mb << 20) as w:
    for s in range(0, rows, chunk):
      m = min(chunk, rows - s)
      z = means[y[s : s + m]] + rng.standard_normal((m, rank), dtype=np.float32)
      x = z @ basis + rng.standard_normal((m, 4), dtype=np.float32) @ nuisance
      x += rng.standard_normal((m, dims), dtype=np.float32)
      x += 1.0
      np.maximum(x, 0.0, out=x)
      w.write(x, identity=y[s : s + m])
  return shards.FeatureStore(str(path))


def child(args) -> dict:
  """One attacker in this process; prints its record as JSON."""
  from privjax.attacks import registry, shards, streaming

  store = shards.FeatureStore(args.store)
  y = store.labels("identity")
  n_train = int(round(0.8 * store.num_rows))
  tr, te = np.arange(n_train), np.arange(n_train, store.num_rows)
  budget = int(args.budget_gb * (1 << 30))
  start = time.perf_counter()
  if args.child in streaming.FAMILIES:
    kw = (
        {"l2": L2, "epochs": args.epochs, "max_epochs": args.epochs}
        if args.child == "streaming_linear"
        else {}
    )
    r = streaming.run_streaming_attack(
        args.child, store, y[tr], y[te], tr, te, memory_budget=budget, **kw
    )
  else:
    x = store.rows(np.arange(store.num_rows)).astype(np.float32)
    kw = {"l2": L2} if args.child == "linear" else {}
    r = registry.run_attack(args.child, x[tr], y[tr], x[te], y[te], **kw)
  keep = (
      "converged",
      "suboptimality_bound",
      "pca_k",
      "whiten",
      "gram_seconds",
      "batch_rows",
      "iterations",
  )
  return {
      "family": args.child,
      "rows": store.num_rows,
      "dims": store.dim,
      "store_gb": store.nbytes / 2**30,
      "seconds": time.perf_counter() - start,
      "cpu_seconds": _cpu_seconds(),
      "peak_rss_gb": _max_rss() / 2**30,
      "top1": r.top1,
      "top1_se": r.top1_se,
      "top5": r.top5,
      **{k: r.extra[k] for k in keep if k in r.extra},
  }


def run_child(args, family, store, cap_gb) -> dict:
  cmd = [
      sys.executable,
      "-m",
      __spec__.name,
      "--child",
      family,
      "--store",
      str(store),
      "--epochs",
      str(args.epochs),
      "--budget-gb",
      str(args.budget_gb),
      "--cap-gb",
      str(cap_gb),
  ]
  print("+", " ".join(cmd), flush=True)
  out = subprocess.run(cmd, capture_output=True, text=True)
  if out.returncode:
    return {"family": family, "error": out.stderr.strip().splitlines()[-1:], "cap_gb": cap_gb}
  record = json.loads(out.stdout.strip().splitlines()[-1])
  record["cap_gb"] = cap_gb
  print(json.dumps(record), flush=True)
  return record


def time_extraction(images: int, batch: int) -> dict:
  """Seconds per image of VGG-16 up to conv4_3 at 224 x 224 (random weights), compile excluded."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from privjax import models

  model = models.SplitModel("vgg16", "conv4_3", 2, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model.extractor)

  @jax.jit
  def extract(params, x):
    return nnx.merge(graphdef, params)(x)

  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3)), jnp.float32)
  extract(params, x).block_until_ready()
  batches = max(1, images // batch)
  start = time.perf_counter()
  for _ in range(batches):
    out = extract(params, x)
  out.block_until_ready()
  seconds = time.perf_counter() - start
  assert out.shape[1:] == CONV4_3, out.shape
  return {"images": batches * batch, "seconds": seconds, "per_image": seconds / (batches * batch)}


def _fmt(r: dict) -> str:
  if "error" in r:
    return f"| {r['family']} | failed: {' '.join(r['error'])} | | | | | | |"
  conv = r.get("converged")
  extra = []
  if "pca_k" in r:
    extra.append(f"PCA-{r['pca_k']}{' whitened' if r.get('whiten') else ''}")
  if "gram_seconds" in r:
    extra.append(f"Gram pass {r['gram_seconds']:.0f} s")
  if "suboptimality_bound" in r:
    extra.append(f"suboptimality bound {r['suboptimality_bound']:.3f}")
  if "batch_rows" in r:
    extra.append(f"batch {r['batch_rows']} rows")
  over = r["cap_gb"] and r["peak_rss_gb"] > r["cap_gb"]
  return (
      f"| {r['family']} | {r['rows']} x {r['dims']} ({r['store_gb']:.2f} GB f16) | "
      f"{r['seconds']:.0f} | {r['cpu_seconds']:.0f} | {r['peak_rss_gb']:.2f}{' OVER THE CAP' if over else ''} | "
      f"{100 * r['top1']:.1f} ± "
      f"{100 * r['top1_se']:.1f} | {conv} | {'; '.join(extra)} |"
  )


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--rows", type=int, default=LFW_ROWS)
  p.add_argument("--dims", type=int, default=FULL_DIMS)
  p.add_argument("--classes", type=int, default=100)
  p.add_argument("--epochs", type=int, default=5)
  p.add_argument("--budget-gb", type=float, default=6.0)
  p.add_argument("--cap-gb", type=float, default=8.0)
  p.add_argument("--inmemory-dims", type=int, default=8192)
  p.add_argument("--extract-images", type=int, default=16)
  p.add_argument("--extract-batch", type=int, default=8)
  p.add_argument("--store-dir", default="streaming_eval_stores")
  p.add_argument("--keep", action="store_true")
  p.add_argument("--out", default="benchmarks/results/streaming_eval.md")
  p.add_argument("--overwrite", action="store_true")
  p.add_argument("--skip", default="", help="comma list of: big, small, extract")
  p.add_argument("--child", help=argparse.SUPPRESS)
  p.add_argument("--store", help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.child:
    print(json.dumps(child(args)))
    return
  if os.path.exists(args.out) and not args.overwrite:
    sys.exit(f"error: {args.out} exists; pass --overwrite or another --out")
  skip = set(filter(None, args.skip.split(",")))
  root = Path(args.store_dir)
  if root.exists():
    sys.exit(f"error: {root} exists; the benchmark writes its stores there and deletes them")
  command = "nice -n 10 python -m benchmarks.streaming_eval " + " ".join(sys.argv[1:])
  load_before = os.getloadavg()
  started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
  records, writes = [], {}
  try:
    if "big" not in skip:
      t = time.perf_counter()
      write_synthetic(root / "big", args.rows, args.dims, args.classes, seed=0)
      writes["big"] = time.perf_counter() - t
      for family in ("streaming_linear", "streaming_pca_linear"):
        records.append(run_child(args, family, root / "big", args.cap_gb))
      if not args.keep:
        shutil.rmtree(root / "big")
    if "small" not in skip:
      t = time.perf_counter()
      write_synthetic(root / "small", args.rows, args.inmemory_dims, args.classes, seed=1)
      writes["small"] = time.perf_counter() - t
      for family in ("linear", "streaming_linear", "pca_linear", "streaming_pca_linear"):
        records.append(run_child(args, family, root / "small", 0))
  finally:
    if not args.keep and root.exists():
      shutil.rmtree(root)
  extraction = (
      None if "extract" in skip else time_extraction(args.extract_images, args.extract_batch)
  )
  load_after = os.getloadavg()

  lines = [
      "# Streaming evaluation at VGG-16 conv4_3 scale",
      "",
      f"Command: `{command}`  ",
      f"Started {started} on {platform.node()} ({os.cpu_count()} CPUs), shared with other jobs: "
      f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (1-minute). "
      "Times are those of a niced process on a busy machine; memory is not affected by that.",
      "",
      "Synthetic float16 feature shards, 80% attacker-train / 20% attacker-test, "
      f"{args.classes} identity classes; streaming runs with `memory_budget` {args.budget_gb} GB, "
      f"their peak RSS (VmHWM of the child process) against the {args.cap_gb} GB cap. "
      f"streaming_linear: minibatch Adam, l2 {L2}, {args.epochs} epochs; linear: L-BFGS, the same "
      "l2; pca_*: sizes 32/128/512, whitened or not, chosen on val.",
      "",
      "| attacker | rows x dims (store) | wall s | CPU s | peak RSS GB | top-1 % | converged | notes |",
      "|---|---|---|---|---|---|---|---|",
      *[_fmt(r) for r in records],
      "",
      "Store writing (synthetic generation included): "
      + ", ".join(f"{k} {v:.0f} s" for k, v in writes.items()),
  ]
  big = {r["family"]: r for r in records if r.get("dims") == args.dims and "error" not in r}
  if args.dims != FULL_DIMS and big:
    scale = FULL_DIMS / args.dims
    lines += [
        "",
        f"## Extrapolated to {FULL_DIMS} dims ({args.rows} rows; this run used {args.dims})",
        "",
        f"Cost linear in D: streaming_linear whole, the Gram pass of streaming_pca_linear (x{scale:.1f}); "
        "from CPU seconds (wall seconds on this shared machine mostly measure waiting).",
    ]
    if "streaming_linear" in big:
      r = big["streaming_linear"]
      lines.append(
          f"* streaming_linear, {args.epochs} epochs: ~{r['seconds'] * scale / 3600:.1f} h "
          f"({r['seconds'] * scale / 60 / (args.epochs + 3):.1f} min per pass over the store)"
      )
    if "streaming_pca_linear" in big:
      r = big["streaming_pca_linear"]
      g = r.get("gram_seconds", 0.0)
      est = g * scale + (r["seconds"] - g)
      lines.append(
          f"* streaming_pca_linear: ~{est / 3600:.1f} h (Gram pass ~{g * scale / 3600:.1f} h)"
      )
    model_gb = (args.classes + 1) * FULL_DIMS * 16 / 2**30
    lines.append(
        f"* memory: streaming_linear holds its model ({model_gb:.2f} GB at {args.classes} classes: "
        "weights, Adam moments, gradient) plus batches within the budget; the Gram path's largest "
        f"arrays are the {args.rows}^2 Gram matrix and its centred copies, which do not grow with D."
    )
    lines.append("* full-size command: `nice -n 10 python -m benchmarks.streaming_eval`")
  if extraction:
    per = extraction["per_image"]
    lines += [
        "",
        "## Feature extraction (VGG-16 to conv4_3, 224 x 224, random weights, float32, jit)",
        "",
        f"{extraction['images']} images in {extraction['seconds']:.1f} s after compilation: "
        f"{per:.2f} s per image, so ~{per * args.rows / 3600:.1f} h for {args.rows} images on "
        "this machine at this load.",
    ]
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
