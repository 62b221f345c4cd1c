"""Attacker families on synthetic features: separable -> near-perfect, label-free -> chance.

Sizes are shared between tests so jitted solvers/steps compile once per session.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from privjax.attacks import (
    ATTACKERS,
    AttackResult,
    evaluate_attacker,
    fit_linear,
    fit_mlp,
    fit_module,
    run_attack,
    strongest,
    train_val_split,
)
from privjax.attacks import linear as linear_lib
from privjax.attacks.common import fit_standardizer

K = 10
N_TRAIN, N_TEST = 400, 1000
OFFSET = 100  # arbitrary label ids 100..109


def blobs(n, shape=(16,), *, sep=3.0, seed=0, informative=True):
  """Gaussian blobs per class (labels OFFSET..OFFSET+K-1); label-free when not informative."""
  rng = np.random.default_rng(seed)
  means = np.random.default_rng(1234).normal(size=(K,) + shape) * sep
  y = rng.integers(0, K, size=n)
  centre = means[y] if informative else means[rng.integers(0, K, size=n)]
  x = centre + rng.normal(size=(n,) + shape)
  return x.astype(np.float32), (y + OFFSET).astype(np.int64)


def chance_bound(n_test):
  # chance + 4 standard deviations of a binomial proportion
  p = 1.0 / K
  return p + 4.0 * np.sqrt(p * (1 - p) / n_test)


def tiny_conv(num_classes, rngs):
  class Head(nnx.Module):

    def __init__(self):
      self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
      self.out = nnx.Linear(8, num_classes, rngs=rngs)

    def __call__(self, x):
      return self.out(jnp.mean(nnx.relu(self.conv(x)), axis=(1, 2)))

  return Head()


FAMILIES = {
    'linear': dict(shape=(16,), fit=lambda x, y: fit_linear(x, y)),
    'mlp': dict(
        shape=(16,),
        fit=lambda x, y: fit_mlp(x, y, hidden=(32,), max_epochs=40, patience=8, batch_size=64),
    ),
    'transfer': dict(
        shape=(4, 4, 3),
        fit=lambda x, y: fit_module(
            tiny_conv, x, y, lr=3e-3, max_epochs=40, patience=8, batch_size=64
        ),
    ),
}


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_separable_is_near_perfect(family):
  spec = FAMILIES[family]
  x, y = blobs(N_TRAIN + N_TEST, spec['shape'])
  attacker = spec['fit'](x[:N_TRAIN], y[:N_TRAIN])
  assert attacker.family == family
  scores = evaluate_attacker(attacker, x[N_TRAIN:], y[N_TRAIN:])
  assert scores['top1'] >= 0.95, scores
  assert scores['top5'] >= scores['top1']


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_label_free_features_give_chance(family):
  spec = FAMILIES[family]
  x, y = blobs(N_TRAIN + N_TEST, spec['shape'], informative=False, seed=1)
  attacker = spec['fit'](x[:N_TRAIN], y[:N_TRAIN])
  scores = evaluate_attacker(attacker, x[N_TRAIN:], y[N_TRAIN:])
  assert scores['top1'] <= chance_bound(N_TEST), scores


def test_linear_is_invariant_to_feature_scale():
  # Siamese fine-tuning can shrink all features; standardisation must undo it.
  x, y = blobs(N_TRAIN + N_TEST, sep=0.6, seed=2)  # overlapping: accuracy well below 1
  a = fit_linear(x[:N_TRAIN], y[:N_TRAIN])
  b = fit_linear(x[:N_TRAIN] * 1e-3, y[:N_TRAIN])
  sa = evaluate_attacker(a, x[N_TRAIN:], y[N_TRAIN:])
  sb = evaluate_attacker(b, x[N_TRAIN:] * 1e-3, y[N_TRAIN:])
  assert 0.3 < sa['top1'] < 0.95
  assert a.l2 == b.l2
  assert abs(sa['top1'] - sb['top1']) <= 0.005, (sa, sb)
  agree = np.mean(a.predict(x[N_TRAIN:]) == b.predict(x[N_TRAIN:] * 1e-3))
  assert agree >= 0.99


def test_label_ids_are_remapped_and_unseen_test_labels_count_as_wrong():
  x, y = blobs(N_TRAIN + N_TEST)
  attacker = fit_linear(x[:N_TRAIN], y[:N_TRAIN])
  assert attacker.class_map.num_classes == K
  assert set(np.unique(attacker.predict(x[N_TRAIN:]))) <= set(range(OFFSET, OFFSET + K))
  x_te, y_te = x[N_TRAIN:], y[N_TRAIN:].copy()
  full = evaluate_attacker(attacker, x_te, y_te)['top1']
  y_te[: N_TEST // 2] = 999  # an identity the attacker never saw
  half = evaluate_attacker(attacker, x_te, y_te)['top1']
  hits_kept = np.mean(attacker.predict(x_te[N_TEST // 2 :]) == y_te[N_TEST // 2 :])
  assert half == pytest.approx(hits_kept / 2, abs=1e-6)
  assert half <= full / 2 + 0.05


def _reference_objective(w_flat, x, y, l2, k):
  d = x.shape[1]
  w, b = w_flat[: k * d].reshape(k, d), w_flat[k * d :]
  logits = x @ w.T + b
  m = logits.max(axis=1, keepdims=True)
  p = np.exp(logits - m)
  p /= p.sum(axis=1, keepdims=True)
  lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
  value = np.mean(lse - logits[np.arange(len(y)), y]) + 0.5 * l2 * np.sum(w * w)
  g = p.copy()
  g[np.arange(len(y)), y] -= 1.0
  g /= len(y)
  return value, np.concatenate([(g.T @ x + l2 * w).ravel(), g.sum(axis=0)])


# (N_TRAIN, 16, K) reuses the compiled refit solver of the other linear tests.
@pytest.mark.parametrize('n,d,k,precondition', [(N_TRAIN, 16, K, False), (120, 40, 3, True)])
def test_linear_solver_reaches_the_reference_optimum(n, d, k, precondition):
  minimize = pytest.importorskip('scipy.optimize').minimize  # scipy comes with jax
  rng = np.random.default_rng(3)
  l2 = 0.05
  y = rng.integers(0, k, size=n)
  # correlated features with a strong direction, so the preconditioner has work to do
  x = rng.normal(size=(n, d)) + 5.0 * rng.normal(size=(n, 1)) * rng.normal(size=(1, d))
  x[:, :3] += y[:, None]
  attacker = fit_linear(x, y, l2=l2, tol=1e-6, max_iter=2000, precondition=precondition)
  assert attacker.info['precondition_rank'] == (d // 4 if precondition else 0)
  xs = fit_standardizer(x).apply(x).astype(np.float64)
  ref = minimize(
      _reference_objective,
      np.zeros(k * d + k),
      args=(xs, y, l2, k),
      jac=True,
      method='L-BFGS-B',
      options=dict(maxiter=10000, gtol=1e-10, ftol=1e-15),
  )
  ours = np.concatenate([np.asarray(attacker.weight).ravel(), np.asarray(attacker.bias)])
  ours_value = _reference_objective(ours.astype(np.float64), xs, y, l2, k)[0]
  assert ours_value == pytest.approx(ref.fun, rel=1e-5, abs=1e-6)
  np.testing.assert_allclose(attacker.weight, ref.x[: k * d].reshape(k, d), atol=2e-3)


def test_linear_selects_l2_on_validation_only():
  x, y = blobs(N_TRAIN, sep=0.6, seed=4)
  attacker = fit_linear(x, y)
  path = attacker.info['path']
  assert [p['l2'] for p in path] == sorted(linear_lib.DEFAULT_L2, reverse=True)
  best = max(p['val_top1'] for p in path)
  chosen = [p for p in path if p['l2'] == pytest.approx(attacker.l2)][0]
  assert chosen['val_top1'] == best
  assert attacker.info['refit']


def test_train_val_split_is_stratified_and_disjoint():
  y = np.repeat(np.arange(7) + 50, [1, 2, 5, 10, 10, 10, 40])
  tr, va = train_val_split(len(y), 0.25, seed=0, labels=y)
  assert len(np.intersect1d(tr, va)) == 0
  assert len(tr) + len(va) == len(y)
  assert set(y[tr]) == set(y)  # every class keeps a training example
  assert abs(np.sum(y[va] == 56) - 10) <= 1


def test_transfer_requires_a_module_factory():
  x, y = blobs(50)
  with pytest.raises(ValueError, match='module_factory'):
    ATTACKERS['transfer'](x, y, seed=0)
  assert set(ATTACKERS) == {'linear', 'mlp', 'transfer'}


def test_strongest_picks_max_top1_then_top5():
  r = lambda f, t1, t5: AttackResult(
      family=f, top1=t1, top5=t5, num_classes=10, train_seconds=0.0, extra={}
  )
  name, res = strongest(
      {
          'linear': r('linear', 0.4, 0.9),
          'mlp': r('mlp', 0.5, 0.6),
          'transfer': r('transfer', 0.3, 1.0),
      }
  )
  assert name == 'mlp' and res.top1 == 0.5
  name, _ = strongest({'linear': r('linear', 0.5, 0.7), 'mlp': r('mlp', 0.5, 0.8)})
  assert name == 'mlp'
  with pytest.raises(ValueError):
    strongest({})


def test_run_attack_reports_scores_and_classes():
  x, y = blobs(N_TRAIN + N_TEST)
  result = run_attack('linear', x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:], seed=0)
  assert result.family == 'linear' and result.num_classes == K
  assert result.top1 >= 0.95 and result.train_seconds > 0
  with pytest.raises(KeyError):
    run_attack('nope', x, y, x, y)
