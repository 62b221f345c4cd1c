"""Writes notebooks/privjax_tour.ipynb (outputs stripped). Edit the cells here, then rerun:

python tools/make_notebook.py
"""

import os

import nbformat as nbf

CELLS = [
    (
        'md',
        """# privjax: a tour

Split inference with Siamese fine-tuning (Osia et al., 2017): train the non-private `none` model
and a `siamese` model fine-tuned from it on the embedded `synthetic_faces` data, evaluate both, and
look at what the cloud could learn. Runs top to bottom in Colab (CPU, GPU or TPU runtime) and
locally. Set `PRIVJAX_NOTEBOOK_TINY=1` for the tiny smoke configuration (what CI runs).""",
    ),
    (
        'code',
        """# Install privjax when it is not importable (Colab). REPO_URL is where you cloned it from.
import importlib.util, os, subprocess, sys
REPO_URL = os.environ.get('PRIVJAX_REPO_URL', '')
if importlib.util.find_spec('privjax') is None:
    if not REPO_URL:
        raise RuntimeError('privjax is not installed: set PRIVJAX_REPO_URL to the repository URL '
                           'or pip install -r requirements.txt in a clone')
    subprocess.run(['git', 'clone', '-q', REPO_URL, 'privjax'], check=True)
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '-r', 'requirements.txt'],
                   check=True, cwd='privjax')
    sys.path.insert(0, os.path.abspath('privjax'))
import jax
print('JAX devices:', jax.devices())""",
    ),
    (
        'code',
        """# Parameters: an existing run directory (from `privjax reproduce --workdir DIR`) is
# loaded as it is; otherwise the runs are trained here.
import os
TINY = os.environ.get('PRIVJAX_NOTEBOOK_TINY') == '1'
WORKDIR = os.environ.get('PRIVJAX_NOTEBOOK_WORKDIR', 'runs/notebook_tiny' if TINY else 'runs/notebook')
DATA_DIR = os.environ.get('PRIVJAX_NOTEBOOK_DATA_DIR') or None
VARIANTS = ['none', 'siamese']
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__import__('privjax').__file__)))""",
    ),
    (
        'md',
        """## Train and evaluate
`privjax.experiments.reproduce.run_pipeline` is the README's main job: train `none`, fine-tune
`siamese` from it, evaluate both (attackers, PCA + noise sweep, rank privacy, reconstruction).""",
    ),
    (
        'code',
        """from privjax.evaluate import protocol
from privjax.experiments import reproduce
from privjax.report import tables
from privjax.train import checkpoint

eval_args = 'tiny' if TINY else 'fast'
eval_config = reproduce.load_config(os.path.join(REPO, 'configs/eval/default.py'), eval_args)
runs = [os.path.join(WORKDIR, v) for v in VARIANTS]


def evaluated(run):  # a report of the run's latest checkpoint (its folder names the step)
    if checkpoint.latest_step(run) is None:
        return False
    return os.path.exists(os.path.join(protocol.report_dir(run, eval_config), 'report.json'))


if not all(evaluated(r) for r in runs):
    reproduce.run_pipeline(WORKDIR, os.path.join(REPO, 'configs/default.py'), 'tiny' if TINY else '',
                           eval_config, VARIANTS, data_dir=DATA_DIR)
report_dirs = [protocol.report_dir(r, eval_config) for r in runs]
reports = [tables.load_report(d) for d in report_dirs]""",
    ),
    (
        'md',
        """## Side by side
Primary accuracy, each attacker family's identity accuracy and the strongest, rank privacy and
reconstruction quality, for the non-private and the Siamese model.""",
    ),
    (
        'code',
        """from IPython.display import Markdown, Image, display
display(Markdown(tables.compare_markdown(reports, VARIANTS)))""",
    ),
    (
        'md',
        """## Privacy–accuracy curves over the noise sweep
Each point is one noise variance σ² (label); x is what the strongest identity attacker achieves
(left) or the paper's rank privacy (right), y the cloud head's gender accuracy.""",
    ),
    (
        'code',
        """from privjax.report import plots
paths = plots.privacy_accuracy_plots(reports, WORKDIR, names=VARIANTS)
display(Image(paths['privacy_accuracy_plot']))""",
    ),
    ('md', """## The paper-style table of the Siamese run"""),
    ('code', """display(Markdown(tables.markdown(reports[-1])))"""),
    (
        'md',
        """## What the cloud sees: 2-D projection of the cut features
Attacker-test features projected on their first two principal components, coloured by gender and
by identity (first 8 identities), for `none` and `siamese`: the paper's visual argument is that
Siamese fine-tuning keeps gender apart and mixes identities.""",
    ),
    (
        'code',
        """import matplotlib.pyplot as plt
import numpy as np
from privjax.evaluate import features as features_lib
from privjax.privacy import pca as pca_lib

fig, axes = plt.subplots(2, len(VARIANTS), figsize=(5 * len(VARIANTS), 9))
for col, variant in enumerate(VARIANTS):
    run = features_lib.load_run(os.path.join(WORKDIR, variant), data_dir=DATA_DIR)
    data = features_lib.extract(run, 'attacker_test')
    z = np.asarray(pca_lib.fit_pca(data['features'], 2).apply(data['features']))
    axes[0, col].scatter(z[:, 0], z[:, 1], c=data['gender'], cmap='coolwarm', s=8)
    axes[0, col].set_title(f'{variant}: coloured by gender')
    ids = np.unique(data['identity'])[:8]
    keep = np.isin(data['identity'], ids)
    axes[1, col].scatter(z[keep, 0], z[keep, 1], c=np.searchsorted(ids, data['identity'][keep]),
                         cmap='tab10', s=12)
    axes[1, col].set_title(f'{variant}: 8 identities')
plt.tight_layout()
plt.show()""",
    ),
    (
        'md',
        """## Reconstruction attack
A decoder trained on attacker-train features → images; originals (top) and reconstructions
(bottom) of attacker-test images.""",
    ),
    (
        'code',
        """for variant, report, report_dir in zip(VARIANTS, reports, report_dirs):
    rec = report['reconstruction']
    print(f"{variant}: PSNR {rec['psnr']:.2f} dB, SSIM {rec['ssim']:.3f}")
    display(Image(os.path.join(report_dir, rec['grid'])))""",
    ),
]


def main():
  nb = nbf.v4.new_notebook()
  nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
  nb.metadata['colab'] = {'provenance': []}
  nb.cells = [
      nbf.v4.new_markdown_cell(src) if kind == 'md' else nbf.v4.new_code_cell(src)
      for kind, src in CELLS
  ]
  path = os.path.join(os.path.dirname(__file__), '..', 'notebooks', 'privjax_tour.ipynb')
  nbf.write(nb, path)
  print(f'wrote {os.path.normpath(path)}')


if __name__ == '__main__':
  main()
