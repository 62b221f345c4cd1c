r"""The attacks on accounts and on repeated uploads of configs/eval/lfw_attacks.py on their own, with
the attacker's PCA pooled beside the linear attacker (on the LFW photos the attacker's own PCA is
often the strongest single-upload attacker, so pooling it is the stronger attack on accounts):
  python eval.py --workdir RUN --config configs/eval/lfw_accounts.py
  python -m benchmarks.lfw_attack_table RUN ... --name lfw_accounts \
      --out benchmarks/results/lfw_accounts.md
Settings as lfw_attacks.py's: accounts at none/0 and pca:32/0.1 (k = 1, 2, 4, 8 photos of one
person, each family's mean log-probability), repeated uploads at pca:32/0.03 and pca:32/0.1 (linear
on the mean of k uploads), the cloud head at every setting. The PCA attacker is the full
configuration's (32, 128 or 512 components, whitened or not, chosen on the attacker's val split;
with `:fast`, PCA-512 unwhitened only).
"""

from privjax import config_args


def get_config(arg: str = ''):
  c = config_args.parent(__file__, 'lfw_attacks.py').get_config(arg)  # it checks `arg`
  c.name = 'lfw_accounts'
  c.evaluators = ('head', 'accounts', 'repeated_upload')
  c.accounts.families = ('linear', 'pca_linear')
  return c
