"""`none`: the primary task alone (the undefended baseline)."""

from __future__ import annotations

import dataclasses

from privjax.defences.base import Defence


@dataclasses.dataclass(frozen=True)
class Settings:
  """`config.defence.none`: nothing to set and nothing for the frontier to vary."""

  strength: str = ''
  strengths: tuple = ()


class NoDefence(Defence):
  name = 'none'


DEFENCE = NoDefence
