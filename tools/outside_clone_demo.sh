#!/usr/bin/env bash
# privjax installed as a package, used outside any clone: build the wheel from this checkout,
# install it into a brand-new virtual environment (pinned by requirements.txt), then train, resume,
# evaluate and export from the console scripts with the packaged configs, in an empty directory.
#   bash tools/outside_clone_demo.sh [SCRATCH]   (default: a new temporary directory)
# docs/installing.md describes it; benchmarks/results/outside_clone.log is a run of it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
scratch=${1:-$(mktemp -d)}
mkdir -p "$scratch"
cd "$scratch"
echo "# scratch directory $scratch (no clone here: $(ls -A | wc -l) entries)"
python3 -m venv venv
. venv/bin/activate
set -x
pip install -q --upgrade pip
pip wheel -q --no-deps -w wheels "$repo"
grep -v '^-e' "$repo/requirements.txt" > pins.txt  # the verified versions, without `-e .`
pip install -q wheels/privjax-*.whl -c pins.txt
mkdir work && cd work
python -c 'import privjax, os; print(os.path.dirname(privjax.__file__))'
# 1. train the tiny run (6 steps) with the packaged configs/default.py
privjax-train --config configs/default.py:tiny --workdir runs/tiny
# 2. resume: the same run, trained on to 12 steps from its last checkpoint
privjax-train --config configs/default.py:tiny --config.total_steps=12 --workdir runs/tiny
python -c 'import json; print(json.load(open("runs/tiny/final_metrics.json"))["step"])'
# 3. evaluate its frozen features (packaged configs/eval/default.py)
privjax-eval --workdir runs/tiny --config configs/eval/default.py:tiny
head -5 runs/tiny/eval/default/step_*/report.md
# 4. export the device-side extractor
privjax-export --workdir runs/tiny --out export_tiny
ls export_tiny
test ! -e configs && echo "no configs/ directory was needed"
