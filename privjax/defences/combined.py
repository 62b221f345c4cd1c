"""`Combined`: several defences acting together, as the train step sees every defence.

Its state is {defence name: that defence's state}; loss terms add up, metrics merge (defences name
their metrics distinctly), device layers follow each other in the order of `defence.name`.
"""

from __future__ import annotations

import jax

from privjax.defences.base import Defence


class Combined(Defence):

  def __init__(self, defences):
    self.parts = list(defences)
    self.name = '+'.join(d.name for d in self.parts)
    super().__init__(None, self.parts[0].context)

  @property
  def labels(self):
    return tuple(dict.fromkeys(label for d in self.parts for label in d.labels))

  def device_layers(self, rngs):
    return [layer for d in self.parts for layer in d.device_layers(rngs)]

  def device_lr(self):
    rates = [r for r in (d.device_lr() for d in self.parts) if r is not None]
    return rates[0] if rates else None

  def init_state(self, rng):
    return {d.name: d.init_state(jax.random.fold_in(rng, i)) for i, d in enumerate(self.parts)}

  def calibration_output(self, features, batch):
    out = {d.name: d.calibration_output(features, batch) for d in self.parts}
    out = {k: v for k, v in out.items() if v is not None}
    return out or None

  def calibrate(self, state, outputs):
    return {
        d.name: (
            d.calibrate(state[d.name], [o[d.name] for o in outputs])
            if outputs and d.name in outputs[0]
            else state[d.name]
        )
        for d in self.parts
    }

  def loss(self, state, features, batch, rng, params):
    total, metrics = None, {}
    for i, d in enumerate(self.parts):
      term, m = d.loss(state[d.name], features, batch, jax.random.fold_in(rng, i), params)
      total = term if total is None else total + term
      metrics.update(m)
    return total, metrics

  def layer_loss(self, state, reports, batch):
    total, metrics = None, {}
    for d in self.parts:
      term, m = d.layer_loss(state[d.name], reports, batch)
      total = term if total is None else total + term
      metrics.update(m)
    return total, metrics

  def update(self, state, features, batch, rng):
    new, metrics = {}, {}
    for i, d in enumerate(self.parts):
      new[d.name], m = d.update(state[d.name], features, batch, jax.random.fold_in(rng, i))
      metrics.update(m)
    return new, metrics

  def summary(self, state):
    out = {}
    for d in self.parts:
      out.update(d.summary(state[d.name]))
    return out

  def device_cost(self):
    costs = [d.device_cost() for d in self.parts]
    return {k: sum(c[k] for c in costs) for k in ('params', 'flops')}
