"""The attacker families (all but `transfer`, which needs cut-shaped input) on raw pixels: what the
cloud could learn if the device sent the image itself. Config: `pixel_reference` (on/off). Result:
`pixel_reference` {secret: record}, once."""

from __future__ import annotations

SETTINGS = 'once'


def enabled(eval_config) -> bool:
  return bool(eval_config.pixel_reference)


def pixels(ctx, split: str):
  """The split's images flattened, float32 in [0, 1]: the raw-pixel attacker's input."""
  images = ctx.images(split)
  return images.reshape(len(images), -1)


def run(ctx, setting) -> dict:
  # The transfer attacker needs cut-shaped input; on pixels it would be a whole new network.
  families = [f for f in ctx.config.attackers if f != 'transfer']
  x = {s: pixels(ctx, s) for s in ('attacker_train', 'attacker_test')}
  return {
      'pixel_reference': {
          secret: ctx.attack(
              families,
              x['attacker_train'],
              x['attacker_test'],
              ctx.labels('attacker_train', secret),
              ctx.labels('attacker_test', secret),
              factory=None,
              desc=f'{secret} on pixels',
          )
          for secret in ctx.secrets
      }
  }
