"""`none`: the primary task alone (the undefended baseline)."""

from __future__ import annotations

from privjax.defences.base import Defence


class NoDefence(Defence):
  name = 'none'


DEFENCE = NoDefence
