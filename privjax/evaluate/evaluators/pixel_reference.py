"""The attacker families (all but `transfer`, which needs cut-shaped input) on raw pixels: what the
cloud could learn if the device sent the image itself: 'raw' metrics, the reference a defence is
read against (not a leak of the uploads)."""

from __future__ import annotations

from privjax.evaluate import shared

WHERE = 'once'


def run(ctx, setting, settings) -> dict:
  # The transfer attacker needs cut-shaped input; on pixels it would be a whole new network.
  families = [f for f in ctx.config.attacker_families if f != 'transfer']
  x = {s: shared.pixels(ctx, s) for s in ('attacker_train', 'attacker_test')}
  out = {}
  for secret in ctx.secrets:
    record = ctx.attack(
        families,
        x['attacker_train'],
        x['attacker_test'],
        ctx.labels('attacker_train', secret),
        ctx.labels('attacker_test', secret),
        factory=None,
        desc=f'{secret} on pixels',
    )
    out.update(shared.attack_metrics(secret, record, role='raw', on='raw pixels'))
  return out
