"""The experiment runner's plan checks (privjax.experiments.runner); the runs it trains and evaluates
are tested through the experiments that use it (test_frontier, test_reproduce_seeds, test_epath)."""

import pytest

from privjax import config_args, errors
from privjax.experiments import runner

pytestmark = pytest.mark.unit


def tiny_config():
  return config_args.load('configs/default.py:tiny')


@pytest.mark.parametrize(
    'plan,match',
    [
        ([('a', None, None), ('a', None, None)], 'names run a twice'),
        (
            [('a', 'b', None), ('b', None, None)],
            'run a starts from b, which is not planned before it',
        ),
        ([('a', None, 'c')], 'run a is compared with c, which is not planned'),
    ],
)
def test_a_plan_is_refused_before_anything_trains(tmp_path, plan, match):
  planned = [runner.Planned(n, tiny_config(), init_from=i, reference=r) for n, i, r in plan]
  with pytest.raises(errors.ConfigError, match=match):
    runner.run_plan(str(tmp_path), planned, None)
  assert list(tmp_path.iterdir()) == []


def test_every_config_is_validated_before_the_first_run_trains(tmp_path):
  bad = tiny_config()
  bad.model.cut = 'conv9_9'
  planned = [runner.Planned('a', tiny_config()), runner.Planned('b', bad, init_from='a')]
  with pytest.raises(errors.ConfigError, match="unknown cut layer 'conv9_9'"):
    runner.run_plan(str(tmp_path), planned, None)
  assert list(tmp_path.iterdir()) == []
