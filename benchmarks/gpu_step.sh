#!/usr/bin/env bash
# The VGG-16 bf16 training step on one GPU in one device call: privjax against
# torch.compile in the same run, and the variants that may move privjax's number.
#
#   bash benchmarks/gpu_step.sh [OUTDIR]        # OUTDIR defaults to $OUT, else /tmp/gpu_step
#
# About 8 minutes on one H200 once the machine is up (each variant compiles VGG-16 once; the
# torch runs compile it twice). Needs python3 with jax (GPU), flax, optax, torch; a folder .whl
# of wheels for what the machine lacks is installed first if present (for an offline GPU machine
# that has the rest: `pip download --no-deps -d .whl ml-collections==1.1.0` beforehand).
# Writes gpu_step.log (each run's summary), versions.txt and one JSON per run (at most 8 files):
#   base      64 pairs, privjax + torch eager + torch.compile
#   b128/b256 128 / 256 pairs, privjax only
#   nocmdbuf  64 pairs, XLA's CUDA-graph command buffers off
#   triton    64 pairs, XLA's Triton GEMM emitter for every matmul it supports
#   best      the fastest of those settings again, with torch, so its ratio is from one run
# Render the baseline with: python -m benchmarks.speed_table gpu OUTDIR/base.json --out ...
# jax.checkpoint policies are not among the variants: at 64-256 pairs VGG-16 fits the GPU's
# memory several times over, so rematerialising can only add work.
set -uo pipefail
out=${1:-${OUT:-/tmp/gpu_step}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -c 'import jax, flax, optax, torch; print("jax", jax.__version__, "flax", flax.__version__,
  "optax", optax.__version__, "torch", torch.__version__, jax.devices())' | tee "$out/versions.txt"

# name → (XLA_FLAGS, train_step.py arguments); base also times torch eager and torch.compile.
names=(base b128 b256 nocmdbuf triton)
declare -A flags=([nocmdbuf]=--xla_gpu_enable_command_buffer= [triton]=--xla_gpu_triton_gemm_any=true)
declare -A args=([base]='--batch 64' [b128]='--batch 128' [b256]='--batch 256'
  [nocmdbuf]='--batch 64' [triton]='--batch 64')

bench() {  # output name, variant, extra train_step.py arguments
  local name=$1 variant=$2
  shift 2
  echo "== $name: XLA_FLAGS='${flags[$variant]:-${XLA_FLAGS:-}}' ${args[$variant]} $*" |
    tee -a "$out/gpu_step.log"
  # A variant's flags replace the caller's XLA_FLAGS; ${args[...]} is unquoted: several words.
  env ${flags[$variant]:+XLA_FLAGS=${flags[$variant]}} \
    timeout 300 python3 -m benchmarks.train_step --models vgg16 \
    --dtype bfloat16 --skip pipeline,attack --windows 5 --json "$out/$name.json" \
    ${args[$variant]} "$@" 2>&1 |
    grep -E '^ |^vgg|^NVIDIA|^gpu|Error|error' | tee -a "$out/gpu_step.log"
}

for variant in "${names[@]}"; do
  if [ "$variant" = base ]; then bench base base; else bench "$variant" "$variant" --torch off; fi
done

# The fastest setting (images/s) again with torch in the same run.
best=$(python3 - "$out" "${names[@]}" <<'EOF'
import json, os, sys
rates = {}
for name in sys.argv[2:]:
  path = os.path.join(sys.argv[1], name + '.json')
  if os.path.exists(path):
    rows = [r for r in json.load(open(path))['results'] if 'train_images_per_s' in r]
    if rows:
      rates[name] = rows[0]['train_images_per_s']
print(max(rates, key=rates.get) if rates else 'base')
EOF
)
echo "== fastest: $best" | tee -a "$out/gpu_step.log"
if [ "$best" = base ]; then
  echo "base is the fastest: its run already holds the torch ratio" | tee -a "$out/gpu_step.log"
else
  bench best "$best"
fi
