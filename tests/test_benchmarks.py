"""Smoke tests of the speed benchmarks: they run, and what they report is internally consistent."""

import json
import os
import subprocess
import sys

import pytest

from privjax.cost import analysis

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run(
      [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
  )


def test_train_step_benchmark_reports_rates_and_the_textbook_count(tmp_path):
  out = tmp_path / 'speed.json'
  proc = _run(
      [
          '-m',
          'benchmarks.train_step',
          '--models=vgg_mini',
          '--batch=2',
          '--windows=2',
          '--window-seconds=0.05',
          '--torch=off',
          '--skip=pipeline,attack',
          f'--json={out}',
      ],
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  (row,) = json.loads(out.read_text())['results']
  assert row['model'] == 'vgg_mini' and row['batch_pairs'] == 2
  assert row['train_images_per_s'] > 0 and row['extract_images_per_s'] > 0
  assert row['train_images_per_s'] == pytest.approx(4e3 / row['step_ms'])  # both branches
  # 3x the forward pass of 4 images (textbook_flops itself is checked by hand in test_cost.py).
  forward = sum(analysis.textbook_flops('vgg_mini', 2).values())
  assert row['textbook_flops_per_step'] == 3 * 4 * forward
  assert row['textbook_tflops'] == pytest.approx(
      row['textbook_flops_per_step'] / row['step_ms'] / 1e9
  )
  assert 'mfu' not in row  # no bf16 peak to divide by on a CPU


def test_step_profile_attributes_most_of_the_step_to_named_instructions(tmp_path):
  out = tmp_path / 'profile.md'
  proc = _run(['-m', 'benchmarks.step_profile', '--steps=2', '--top=3', f'--out={out}'])
  assert proc.returncode == 0, proc.stderr[-2000:]
  text = out.read_text()
  kinds = dict(
      (cells[1].strip(), float(cells[2]))
      for cells in (line.split('|') for line in text.splitlines())
      if len(cells) == 5 and cells[2].strip().replace('.', '').isdigit()
  )
  assert kinds['convolution'] > 0 and kinds['transpose (inserted layout change)'] > 0
  assert sum(line.startswith('| `') for line in text.splitlines()) == 3  # --top instructions
