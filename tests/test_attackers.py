"""Attacker families on synthetic features: separable -> near-perfect, label-free -> chance.

Also: the attacker's own PCA (pca_* families), L-BFGS non-convergence at the iteration cap, and the
report record (standard errors, chance and majority-class baselines).

Sizes are shared between tests so jitted solvers/steps compile once per session.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from privjax.attacks import (
    ATTACKERS,
    AttackResult,
    ClassMap,
    evaluate_attacker,
    fit_linear,
    fit_mlp,
    fit_module,
    fit_pca_attacker,
    run_attack,
    strongest,
    summarize,
    train_val_split,
)
from privjax.attacks import linear as linear_lib
from privjax.attacks import pca as pca_lib
from privjax.attacks.common import fit_standardizer
from privjax.privacy import pca as features_pca

pytestmark = pytest.mark.unit

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


def test_features_constant_on_the_training_rows_contribute_nothing():
  # Dead ReLU units: exactly zero on every training row, yet firing on test rows. With an
  # absolute std floor (1e-6) they standardised to |z| ~ 1e6 there, and the MLP's first-layer
  # weights on them (never trained: their input was always 0) swamped its logits.
  rng = np.random.default_rng(5)
  live, y = blobs(N_TRAIN + N_TEST, (16,))
  dead = np.zeros((N_TRAIN + N_TEST, 8), np.float32)
  dead[N_TRAIN:] = rng.uniform(0.0, 3.0, size=(N_TEST, 8))
  dead[:N_TRAIN, -1] = 0.1  # constant but not zero: float32 rounding leaves a tiny std
  x = np.concatenate([live, dead], axis=1)
  standardizer = fit_standardizer(x[:N_TRAIN])
  assert np.all(np.isinf(standardizer.std[16:]))
  reference = fit_standardizer(live[:N_TRAIN]).apply(live[N_TRAIN:])
  for z in (
      standardizer.apply(x[N_TRAIN:]),
      np.asarray(standardizer.apply(jnp.asarray(x[N_TRAIN:]))),
  ):
    assert z.shape == x[N_TRAIN:].shape and np.all(np.abs(z) < 10)
    np.testing.assert_array_equal(z[:, 16:], 0.0)
    np.testing.assert_array_equal(z[:, :16], reference)  # live features exactly as before
  quiet = x[N_TRAIN:].copy()
  quiet[:, 16:] = dead[:N_TRAIN].mean(axis=0)
  attacker = FAMILIES['mlp']['fit'](x[:N_TRAIN], y[:N_TRAIN])
  np.testing.assert_array_equal(attacker.predict(x[N_TRAIN:]), attacker.predict(quiet))
  assert evaluate_attacker(attacker, x[N_TRAIN:], y[N_TRAIN:])['top1'] >= 0.95


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


# (N_TRAIN, 16, K) reuses the compiled refit solver of the other linear tests. The row-space
# cases have more features than rows, once of full row rank and once of rank 40 < n (dead and
# redundant features, as CNN activations have): the fit in the rows' span must reach the optimum
# over all of R^D.
@pytest.mark.parametrize(
    'n,d,k,precondition,rowspace,rank',
    [
        (N_TRAIN, 16, K, False, False, None),
        (120, 40, 3, True, False, None),
        (60, 300, 4, False, True, None),
        (100, 400, 5, True, True, 40),
    ],
)
def test_linear_solver_reaches_the_reference_optimum(n, d, k, precondition, rowspace, rank):
  minimize = pytest.importorskip('scipy.optimize').minimize  # scipy comes with jax
  rng = np.random.default_rng(3)
  l2 = 0.05
  y = rng.integers(0, k, size=n)
  # correlated features with a strong direction, so the preconditioner has work to do
  x = rng.normal(size=(n, d)) + 5.0 * rng.normal(size=(n, 1)) * rng.normal(size=(1, d))
  x[:, :3] += y[:, None]
  if rank is not None:  # rows in a rank-`rank` subspace (the labelled columns among its spans)
    x = x[:, :rank] @ np.concatenate([np.eye(rank), rng.normal(size=(rank, d - rank))], axis=1)
  attacker = fit_linear(
      x, y, l2=l2, tol=1e-6, max_iter=2000, precondition=precondition, rowspace=rowspace
  )
  # the standardised rows span n - 1 dimensions (centred), or `rank`
  span = (rank if rank is not None else n - 1) if rowspace else None
  assert attacker.info['rowspace_rank'] == span
  assert attacker.info['precondition_rank'] == (min(n, span or d) // 4 if precondition else 0)
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
  assert set(ATTACKERS) == {'linear', 'mlp', 'transfer', 'pca_linear', 'pca_mlp'}


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


# --- L-BFGS iteration cap -------------------------------------------------------------------------


def test_linear_reports_non_convergence_at_its_cap(caplog):
  x, y = blobs(N_TRAIN, sep=0.6, seed=4)  # overlapping classes: two iterations are far too few
  with caplog.at_level('WARNING'):
    capped = fit_linear(x, y, l2=0.01, max_iter=2)
  assert capped.info['converged'] is False
  assert capped.info['iterations'] == 2 and capped.info['capped_runs'] == 1
  assert 'cap of 2 iterations' in caplog.text and 'not converged' in caplog.text
  assert '1 L-BFGS run stopped' in caplog.text and 'l2=0.01)' in caplog.text
  caplog.clear()
  with caplog.at_level('WARNING'):
    done = fit_linear(x, y, l2=0.01)
  assert done.info['converged'] is True and 2 < done.info['iterations'] < done.info['max_iter']
  assert done.info['gmax'] <= done.info['gtol'] and not caplog.text
  # With a path, each capped run counts; the reported one is the final (refitted) model's.
  caplog.clear()
  with caplog.at_level('WARNING'):
    path = fit_linear(x, y, max_iter=2)
  assert path.info['capped_runs'] == len(linear_lib.DEFAULT_L2) + 1
  assert path.info['converged'] is False
  # One warning per fit: the chosen penalty's val run and its refit are named apart, not repeated.
  (record,) = [r for r in caplog.records if 'L-BFGS' in r.getMessage()]
  chosen = f'l2={path.l2:g}'
  assert f'{len(linear_lib.DEFAULT_L2) + 1} L-BFGS runs stopped' in record.getMessage()
  assert f'{chosen} on the val split' in record.getMessage()
  assert f'{chosen} refitted on all rows)' in record.getMessage()


def test_max_iter_reaches_the_linear_attacker_through_overrides():
  x, y = blobs(N_TRAIN + N_TEST, sep=0.6, seed=4)
  result = run_attack('linear', x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:], max_iter=2)
  summary = result.summary()
  assert summary['converged'] is False and summary['iterations'] == 2
  assert summary['max_iter'] == 2 and 'path' not in summary


# --- standard errors and baselines ----------------------------------------------------------------


class _FixedLogits:
  """An 'attacker' with given logits, to check the scoring arithmetic by hand."""

  family = 'fixed'

  def __init__(self, logits, classes):
    self._logits = jnp.asarray(logits, jnp.float32)
    self.class_map = ClassMap(np.asarray(classes))

  def logits(self, x):
    return self._logits


def test_evaluate_attacker_standard_errors_by_hand():
  # 8 test examples over classes 10/20/30; the attacker always scores 10 > 20 > 30.
  logits = np.tile([3.0, 2.0, 1.0], (8, 1))
  y = np.array([10, 10, 10, 20, 20, 30, 30, 99])  # 99: never seen by the attacker
  scores = evaluate_attacker(_FixedLogits(logits, [10, 20, 30]), np.zeros((8, 1)), y)
  assert scores['top1'] == pytest.approx(3 / 8) and scores['num_test'] == 8
  assert scores['top1_se'] == pytest.approx(np.sqrt(3 / 8 * 5 / 8 / 8))
  assert scores['top5'] == pytest.approx(7 / 8)  # top-5 is top-3 here; the unseen 99 misses
  assert scores['top5_se'] == pytest.approx(np.sqrt(7 / 8 * 1 / 8 / 8))
  # Log-rank over the 7 known examples: ranks 1,1,1,2,2,3,3 among 3 classes.
  expected = (2 * np.log(2) + 2 * np.log(3)) / 7 / np.log(3)
  assert scores['log_rank'] == pytest.approx(expected)


def test_summarize_shows_majority_beside_chance():
  r = lambda f, t1, n: AttackResult(
      family=f,
      top1=t1,
      top5=1.0,
      num_classes=2,
      train_seconds=1.0,
      extra={'converged': False, 'iterations': 7, 'path': [1, 2]},
      top1_se=np.sqrt(t1 * (1 - t1) / n),
      top5_se=0.0,
      num_test=n,
  )
  y_train = np.array([0, 1, 1, 1, 1, 1])
  y_test = np.array([1, 1, 1, 0, 1, 1, 1, 1, 1, 1])  # 90% one class
  out = summarize({'linear': r('linear', 0.8, 10), 'mlp': r('mlp', 0.9, 10)}, y_train, y_test)
  assert out['strongest'] == 'mlp' and out['top1'] == 0.9
  assert out['top1_se'] == pytest.approx(np.sqrt(0.9 * 0.1 / 10))
  assert out['chance_top1'] == 0.5 and out['chance_top5'] == 1.0
  assert out['majority_top1'] == pytest.approx(0.9)  # the bar a 90% attacker only just meets
  fam = out['families']['linear']
  assert fam['top1_se'] == pytest.approx(np.sqrt(0.8 * 0.2 / 10))
  assert fam['converged'] is False and fam['iterations'] == 7 and 'path' not in fam


# --- the attacker's own PCA -----------------------------------------------------------------------


def test_candidate_sizes_are_capped_by_rows_and_dimension():
  assert pca_lib.candidate_sizes((32, 128, 512), 1000, 8192) == [32, 128, 512]
  assert pca_lib.candidate_sizes((32, 128, 512), 100, 8192) == [32, 99]
  assert pca_lib.candidate_sizes((32, 128, 512), 1000, 40) == [32, 40]
  with pytest.raises(ValueError):
    pca_lib.candidate_sizes((0,), 100, 10)
  with pytest.raises(ValueError):
    pca_lib.candidate_sizes((4,), 1, 10)


def test_code_scale_whitens_or_keeps_relative_variances():
  pca = features_pca.PCA(
      mean=np.zeros(3, np.float32),
      components=np.eye(3, dtype=np.float32),
      explained_variance=np.array([16.0, 4.0, 0.0], np.float32),
      feature_shape=(3,),
  )
  # The component without variance gets an infinite divisor: its code is 0.
  np.testing.assert_allclose(pca_lib.code_scale(pca, True), [4.0, 2.0, np.inf], rtol=1e-6)
  np.testing.assert_allclose(
      pca_lib.code_scale(pca, False), [np.sqrt(20 / 3)] * 2 + [np.inf], rtol=1e-6
  )


def _few_rows_many_dims(n, *, d=1500, k=5, signal=16, seed=0):
  """k classes told apart by `signal` features; the other d - signal are near-constant (std 0.01).

  Like dead or nearly dead CNN channels: per-feature standardisation blows the near-constant
  features up to unit variance, and with ~20 rows per class the plain linear attacker fits that
  noise. The top principal directions of the raw features are the signal features, so an attacker
  that does its own PCA first ignores the noise.
  """
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(98).normal(size=(k, signal)) * 0.6
  y = rng.integers(0, k, size=n)
  x = np.empty((n, d))
  x[:, :signal] = centres[y] + rng.normal(size=(n, signal))
  x[:, signal:] = 0.01 * rng.normal(size=(n, d - signal))
  return x.astype(np.float32), y


def test_pca_attacker_beats_the_plain_linear_attacker_when_dimension_reduction_helps():
  x, y = _few_rows_many_dims(100 + 1000)
  x_tr, y_tr, x_te, y_te = x[:100], y[:100], x[100:], y[100:]
  plain = evaluate_attacker(fit_linear(x_tr, y_tr), x_te, y_te)['top1']
  # One l2 for the PCA attacker (fewer compiles); the plain attacker still chooses among four.
  pca = fit_pca_attacker(x_tr, y_tr, base='linear', sizes=(8, 512), l2=0.01)
  ours = evaluate_attacker(pca, x_te, y_te)['top1']
  assert pca.family == 'pca_linear'
  assert ours >= plain + 0.2, (ours, plain)  # measured: 0.68 vs 0.28
  # Chosen on the attacker's own val split: the best candidate, ties to the smaller size.
  cands = pca.info['candidates']
  rows = train_val_split(100, 0.2, 0, y_tr)[0].size  # the selection's train part (stratified)
  # 512 capped at its rows - 1; each size unwhitened and whitened (the default).
  assert [(c['pca_k'], c['whiten']) for c in cands] == [
      (8, False),
      (8, True),
      (rows - 1, False),
      (rows - 1, True),
  ]
  best = max(c['val_top1'] for c in cands)
  chosen = next(c for c in cands if c['val_top1'] == best)
  assert (pca.info['pca_k'], pca.info['whiten']) == (chosen['pca_k'], chosen['whiten'])
  assert pca.pca.k == pca.info['pca_k']
  assert pca.info['converged'] is True


def test_pca_attacker_tries_every_candidate_and_refits_on_all_training_rows():
  x, y = _few_rows_many_dims(100 + 200, seed=1)
  kw = dict(base='linear', sizes=(8, 32), whiten=(False, True), l2=0.01)
  a = fit_pca_attacker(x[:100], y[:100], **kw)
  # Candidates are scored on a val part of the 100 training rows (the function never gets the
  # test rows); the same call again gives the same scores (the split and the PCA are seeded) ...
  b = fit_pca_attacker(x[:100], y[:100], **kw)
  assert a.info['candidates'] == b.info['candidates']
  assert [(c['pca_k'], c['whiten']) for c in a.info['candidates']] == [
      (8, False),
      (8, True),
      (32, False),
      (32, True),
  ]
  # ... and the final PCA is fitted on all 100 training rows: its mean is theirs.
  np.testing.assert_allclose(a.pca.mean, x[:100].mean(axis=0), atol=1e-4)


def test_pca_families_run_through_the_registry():
  x, y = _few_rows_many_dims(100 + 200, seed=2)
  for family, extra in (('pca_linear', {'max_iter': 50}), ('pca_mlp', {'max_epochs': 20})):
    result = run_attack(
        family, x[:100], y[:100], x[100:], y[100:], seed=0, sizes=(8,), whiten=True, **extra
    )
    summary = result.summary()
    assert summary['pca_k'] == 8 and summary['whiten'] is True
    assert result.top1 >= 0.5, (family, result.top1)  # 5 classes: chance 0.2
    assert 'candidates' not in summary  # one size: nothing selected, nothing held out
