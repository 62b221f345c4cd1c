"""Writes the tour notebook, the source of truth for it: notebooks/privjax_tour.ipynb (outputs
stripped) and, with --execute, notebooks/privjax_tour.executed.ipynb (run top to bottom on the tiny
configuration, outputs kept). Edit the cells here, then rerun:

python tools/make_notebook.py [--execute]

--execute builds the tiny synthetic data set and runs the notebook (nbclient) in a temporary folder
with PRIVJAX_NOTEBOOK_TINY=1: nothing is downloaded. tests/test_notebook.py checks that both files
hold exactly the cells below. The notebook uses privjax's public API only (`privjax.compare`,
`load_report`, `load_run`, `report_dir` and the `privjax` command), with numpy, pandas and
matplotlib.
"""

import argparse
import os
import sys
import tempfile
import time

import nbformat as nbf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(ROOT, 'notebooks', 'privjax_tour.ipynb')
EXECUTED = os.path.join(ROOT, 'notebooks', 'privjax_tour.executed.ipynb')

INTRO = """# privjax: a tour

[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/privjax/blob/main/notebooks/privjax_tour.ipynb)

Split inference with Siamese fine-tuning (Osia et al., 2017): train the non-private `none` model
and a `siamese` model fine-tuned from it on the embedded `synthetic_faces` data, evaluate both, and
look at what the cloud could learn, through privjax's Python API (`privjax.compare`,
`privjax.load_report`, `privjax.load_run`).

**Runs top to bottom** in Colab and locally (Runtime → Run all):

* on a **CPU** runtime with the *tiny* configuration (`configs/default.py:tiny`, evaluated with
  `configs/eval/default.py:tiny`): a smoke run of every step, not meaningful numbers;
* on a **GPU or TPU** runtime with the *demo* configuration: the README's main job
  (`privjax reproduce --workdir runs/demo`: `configs/default.py`, evaluated with
  `configs/eval/default.py:fast`), for the `none` and `siamese` runs.

`CONFIG` in the parameters cell overrides the choice; `PRIVJAX_NOTEBOOK_TINY=1` in the environment
forces the tiny configuration. `notebooks/privjax_tour.executed.ipynb` is this notebook run so, with
its outputs (`python tools/make_notebook.py --execute`).

**The badge's link is a placeholder**: `OWNER/privjax` stands for the GitHub repository that holds
privjax. Put the repository's owner and name in its place in the link above (edit this cell), and
its git URL in the `REPO_URL` field below; or open the notebook from Colab's File → Open notebook →
GitHub. Where privjax is installed already, `REPO_URL` may stay empty."""

PARAMETERS = """# @title Parameters
# CONFIG: 'auto' picks 'tiny' on a CPU runtime and 'demo' on a GPU or TPU runtime (see the top).
# WORKDIR: where the runs go ('' = runs/notebook_<config>); a directory that already holds the
# evaluated runs (`privjax reproduce --workdir DIR`) is loaded as it is, not retrained.
# USE_DRIVE (Colab only): keep the runs in your Google Drive, in the folder DRIVE_FOLDER of
# My Drive, so they outlive the runtime; Drive is mounted (it asks for your permission) only then.
CONFIG = "auto"  # @param ["auto", "tiny", "demo"]
WORKDIR = ""  # @param {type:"string"}
USE_DRIVE = False  # @param {type:"boolean"}
DRIVE_FOLDER = "privjax_runs"  # @param {type:"string"}

import os

import jax

BACKEND = jax.default_backend()
if os.environ.get('PRIVJAX_NOTEBOOK_TINY') == '1':
  CONFIG = 'tiny'
elif CONFIG == 'auto':
  CONFIG = 'tiny' if BACKEND == 'cpu' else 'demo'
TINY = CONFIG == 'tiny'
WORKDIR = os.environ.get('PRIVJAX_NOTEBOOK_WORKDIR') or WORKDIR or f'runs/notebook_{CONFIG}'
if USE_DRIVE:
  if 'google.colab' not in sys.modules:
    raise ValueError('USE_DRIVE works in Colab only; elsewhere set WORKDIR to a folder instead')
  from google.colab import drive

  drive.mount('/content/drive')
  WORKDIR = os.path.join('/content/drive/MyDrive', DRIVE_FOLDER, os.path.basename(WORKDIR))
DATA_DIR = os.environ.get('PRIVJAX_NOTEBOOK_DATA_DIR') or None  # default: the config's
VARIANTS = ['none', 'siamese']
RUNS = {v: os.path.join(WORKDIR, v) for v in VARIANTS}
print(f'jax {jax.__version__} on {BACKEND} ({jax.device_count()} device(s)): config {CONFIG}')
print('workdir:', WORKDIR)"""

TRAIN = """import subprocess

import privjax


def evaluated(run):
  try:
    privjax.load_report(run)
    return True
  except FileNotFoundError:
    return False


if not all(evaluated(run) for run in RUNS.values()):
  command = [sys.executable, '-m', 'privjax', 'reproduce', '--workdir', WORKDIR]
  command += ['--config', 'configs/default.py' + (':tiny' if TINY else '')]
  command += ['--eval_config', 'configs/eval/default.py:' + ('tiny' if TINY else 'fast')]
  command += ['--variants', ','.join(VARIANTS)] + (['--data_dir', DATA_DIR] if DATA_DIR else [])
  print('$ privjax', ' '.join(command[3:]), flush=True)
  # Its log lines say how far it is; its progress bars would print as lines of escape codes here.
  env = {**os.environ, 'TQDM_DISABLE': '1'}
  with subprocess.Popen(
      command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
  ) as proc:
    for line in proc.stdout:
      print(line, end='', flush=True)
  if proc.returncode:
    raise RuntimeError(f'privjax reproduce failed (exit status {proc.returncode}); see above')
reports = {v: privjax.load_report(run) for v, run in RUNS.items()}"""

COMPARE = """import pandas as pd
from IPython.display import Image, display

df = privjax.compare(reports)


def shown(row):
  # `45.3 ± 1.1 %`: percentages to 0.1, anything else to 3 significant digits
  digits, se_digits = ('.1f', '.1f') if row.unit == '%' else ('.3g', '.2g')
  se = '' if pd.isna(row.se) else f' ± {row.se:{se_digits}}'
  return f'{row.value:{digits}}{se} {row.unit}'.strip()


baseline = df[df.baseline].assign(shown=lambda d: d.apply(shown, axis=1))
table = baseline.pivot(index='metric', columns='run', values='shown')[VARIANTS]
table.index = baseline.drop_duplicates('metric').set_index('metric').label.reindex(table.index)
display(table)"""

CURVES = """import matplotlib.pyplot as plt


def strongest(rows):
  # the largest value per run and setting
  return rows.sort_values('value').groupby(['run', 'setting']).tail(1)


per_setting = df[df.setting != 'once']
identity = per_setting[(per_setting.role == 'leak') & (per_setting.secret == 'identity')]
leak = strongest(identity[identity.uploads == 1])
utility = strongest(per_setting[per_setting.role == 'utility'])
keys = ['run', 'setting', 'transform', 'noise_variance']
points = leak.merge(utility, on=keys, suffixes=('_leak', '_utility'))
fig, ax = plt.subplots(figsize=(7, 5))
for (run, transform), p in points.groupby(['run', 'transform'], sort=False):
  p = p.sort_values('noise_variance')
  errors = {'xerr': p.se_leak, 'yerr': p.se_utility, 'capsize': 3}
  ax.errorbar(p.value_leak, p.value_utility, **errors, marker='o', label=f'{run}, {transform}')
  for _, row in p.iterrows():
    ax.annotate(f'σ² {row.noise_variance:g}', (row.value_leak, row.value_utility), fontsize=8)
raw = df[(df.role == 'raw') & (df.secret == 'identity')]
if len(raw):
  ax.axvline(raw.value.max(), color='grey', ls='--', label='identity from the raw photo')
ax.set_xlabel('identity: strongest attack, top-1 (%)')
ax.set_ylabel('utility: best accuracy of the primary task (%)')
ax.legend(fontsize=8)
plt.show()"""

ATTACKS = """columns = ['setting', 'label', 'value', 'se', 'unit', 'uploads', 'note']
leaks = df[(df.run == VARIANTS[-1]) & (df.role == 'leak')]
display(leaks.sort_values('value', ascending=False)[columns].head(12).round(1))"""

PROJECTION = """import numpy as np

fig, axes = plt.subplots(2, len(VARIANTS), figsize=(5 * len(VARIANTS), 9), squeeze=False)
for col, (variant, run_dir) in enumerate(RUNS.items()):
  run = privjax.load_run(run_dir, data_dir=DATA_DIR)
  data = run.features('attacker_test')
  x = data['features'].reshape(len(data['features']), -1)
  x = x - x.mean(axis=0)
  z = x @ np.linalg.svd(x, full_matrices=False)[2][:2].T  # the first two principal components
  axes[0, col].scatter(z[:, 0], z[:, 1], c=data['gender'], cmap='coolwarm', s=8)
  axes[0, col].set_title(f'{variant}: coloured by gender')
  ids = np.unique(data['identity'])[:8]
  keep = np.isin(data['identity'], ids)
  axes[1, col].scatter(
      z[keep, 0], z[keep, 1], c=np.searchsorted(ids, data['identity'][keep]), cmap='tab10', s=12
  )
  axes[1, col].set_title(f'{variant}: 8 identities')
plt.tight_layout()
plt.show()"""

RECONSTRUCTION = """fidelity = df[df.baseline & df.metric.str.startswith('reconstruction/')]
fidelity = fidelity.assign(shown=lambda d: d.apply(shown, axis=1))
display(fidelity.pivot(index='label', columns='run', values='shown')[VARIANTS])
for variant, report in reports.items():
  for title, name in report['images'].items():
    if title.startswith(('reconstruction', 'inversion')) and 'none/0' in title:
      print(f'{variant}: {title}')
      display(Image(os.path.join(privjax.report_dir(RUNS[variant]), name)))"""

INSTALL = r'''# @title Install privjax (only where it is not importable yet)
# REPO_URL: the git URL of the repository that holds privjax, as you would `git clone` it, e.g.
# https://github.com/<owner>/privjax (add @branch, @tag or @commit to pin a version). Needed only
# where privjax is not importable (a fresh Colab runtime): in a clone after
# `pip install -r requirements.txt`, or in CI, it may stay empty; this cell then installs nothing
# and needs no network.
#
# Otherwise (Colab) it runs two pip commands, printed as they run:
#   1. pip install --no-deps git+REPO_URL   -- privjax itself, configs included;
#   2. pip install -c CONSTRAINTS <privjax's declared dependencies>, with CONSTRAINTS holding the
#      runtime's numpy at its version and, on a GPU/TPU runtime (a CUDA, ROCm or TPU build of jax
#      is installed), its jax and jaxlib too: these are left out of the list and held, as the
#      registry's jaxlib is the CPU build and would replace the runtime's accelerator one.
# requirements.txt is not used here: it pins a CPU jax and numpy for a clone.
REPO_URL = ""  # @param {type:"string"}

import importlib
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tempfile


def installed_version(dist):
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return None


def accelerator_jax():
  """The installed distributions that make jax a CUDA, ROCm or TPU build."""
  names = {
      (d.metadata['Name'] or '').lower().replace('_', '-')
      for d in importlib.metadata.distributions()
  }
  builds = sorted(n for n in names if n.startswith(('jax-cuda', 'jax-rocm', 'libtpu')))
  if re.search(r'\+(cuda|rocm)', installed_version('jaxlib') or ''):
    builds.append('jaxlib')  # older jaxlib wheels built for CUDA/ROCm
  return builds


def pip(*args):
  command = [sys.executable, '-m', 'pip', 'install', '-q', *args]
  print('$ pip install -q', ' '.join(args), flush=True)
  subprocess.run(command, check=True)


if importlib.util.find_spec('privjax') is None:
  if 'OWNER' in REPO_URL or not REPO_URL.strip():
    raise ValueError(
        'privjax is not installed: set REPO_URL (the form field above) to the git URL of the '
        'privjax repository, then run this cell again (in a clone: pip install -r '
        'requirements.txt)'
    )
  url = REPO_URL.strip()
  pip('--no-deps', url if url.startswith('git+') else 'git+' + url)
  importlib.invalidate_caches()
  accelerator = accelerator_jax()
  held = ['numpy'] + (sorted({'jax', 'jaxlib', *accelerator}) if accelerator else [])
  pins = [f'{d}=={installed_version(d)}' for d in held if installed_version(d)]
  name = lambda requirement: re.match(r'[A-Za-z0-9._-]+', requirement).group().lower()
  requirements = [
      r
      for r in importlib.metadata.requires('privjax')
      if 'extra ==' not in r and not (accelerator and name(r) in ('jax', 'jaxlib'))
  ]
  with tempfile.NamedTemporaryFile('w', suffix='.txt', delete=False) as f:
    f.write('\n'.join(pins) + '\n')
  print("held at the runtime's versions:", ', '.join(pins), flush=True)
  try:
    pip('-c', f.name, *requirements)
  except subprocess.CalledProcessError:
    raise RuntimeError(
        f"privjax's dependencies cannot be installed next to this runtime's {', '.join(pins)} "
        "(pip's reason is printed above); privjax is verified with the versions in requirements.txt"
    ) from None
  importlib.invalidate_caches()

import privjax

print('privjax', importlib.metadata.version('privjax'), 'from', privjax.__path__[0])'''

CELLS = [
    ('md', INTRO),
    ('code', INSTALL),
    ('code', PARAMETERS),
    (
        'md',
        """## Train and evaluate
`privjax reproduce` is the README's main job: train `none`, fine-tune `siamese` from it, evaluate
both (attackers, PCA + noise sweep, rank privacy, reconstruction). Runs already evaluated in
`WORKDIR` are loaded as they are. Config files are named as on the command line: `configs/...` is
the clone's folder when run from a clone's root, else the configs installed with the package.""",
    ),
    ('code', TRAIN),
    (
        'md',
        """## Side by side
`privjax.compare` gives one row per run × setting × metric (value, standard error, unit, role,
secret, uploads): filter, sort and pivot it as any DataFrame. Here, every metric at the
untransformed, noiseless setting (and those measured once per run), as value ± se.""",
    ),
    ('code', COMPARE),
    (
        'md',
        """## Privacy–accuracy over the noise sweep
Each point is one setting (label: its noise variance σ²), one line per run and feature transform:
x is what the strongest identity attacker achieves on one upload, y the best accuracy of the
primary task the cloud gets, both ± their standard error. The dashed line is the same attackers on
the raw photos.""",
    ),
    ('code', CURVES),
    (
        'md',
        """## The strongest attacks on the Siamese run
Every identification attack at every setting, strongest first (a `note` flags a caveat, such as a
fit that did not converge).""",
    ),
    ('code', ATTACKS),
    (
        'md',
        """## What the cloud sees: 2-D projection of the cut features
`privjax.load_run` restores a run; `run.features(split)` gives its cut features and labels.
Attacker-test features projected on their first two principal components, coloured by gender and
by identity (first 8 identities), for `none` and `siamese`: the paper's visual argument is that
Siamese fine-tuning keeps gender apart and mixes identities.""",
    ),
    ('code', PROJECTION),
    (
        'md',
        """## Reconstruction attack
A decoder trained on attacker-train features → images, and the regularised inversion of the
extractor (rMLE): their quality, then the attacker-test originals (top row) and the
reconstructions of each method below, at the baseline setting.""",
    ),
    ('code', RECONSTRUCTION),
]


def build() -> nbf.NotebookNode:
  """The notebook, outputs stripped."""
  nb = nbf.v4.new_notebook()
  nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
  nb.metadata['colab'] = {'provenance': []}
  nb.metadata['language_info'] = {'name': 'python'}
  nb.cells = [
      nbf.v4.new_markdown_cell(src) if kind == 'md' else nbf.v4.new_code_cell(src)
      for kind, src in CELLS
  ]
  for i, cell in enumerate(nb.cells):
    cell['id'] = f'cell-{i}'  # stable ids: regenerating changes nothing
  return nb


def execute(nb: nbf.NotebookNode, timeout: int = 1800) -> nbf.NotebookNode:
  """`nb` run top to bottom on the tiny configuration in a temporary folder, on the tiny
  synthetic data set built there."""
  import nbclient

  sys.path.insert(0, ROOT)
  from privjax.data import synthetic_faces

  nb = nbf.from_dict(nb)
  with tempfile.TemporaryDirectory(prefix='privjax-notebook-') as tmp:
    data_dir = os.path.join(tmp, 'tfds')
    synthetic_faces.build('tiny', data_dir=data_dir)
    os.environ.update(PRIVJAX_NOTEBOOK_TINY='1', PRIVJAX_NOTEBOOK_DATA_DIR=data_dir)
    os.environ.pop('PRIVJAX_NOTEBOOK_WORKDIR', None)
    start = time.perf_counter()
    nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': tmp}}
    ).execute()
    print(f'executed in {time.perf_counter() - start:.0f} s')
  for cell in nb.cells:
    cell.get('outputs', [])[:] = _coalesced(cell.get('outputs', []))
  return nb


def _coalesced(outputs):
  """Consecutive outputs of one stream as one, as a notebook front end shows them."""
  merged = []
  for output in outputs:
    last = merged[-1] if merged else None
    if (
        last is not None
        and output.output_type == last.output_type == 'stream'
        and output.name == last.name
    ):
      last.text += output.text
    else:
      merged.append(output)
  return merged


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--execute', action='store_true', help='also write the executed copy')
  args = parser.parse_args()
  nb = build()
  nbf.write(nb, PATH)
  print(f'wrote {os.path.relpath(PATH, ROOT)}')
  if args.execute:
    nbf.write(execute(nb), EXECUTED)
    print(f'wrote {os.path.relpath(EXECUTED, ROOT)}')


if __name__ == '__main__':
  main()
