from __future__ import annotations

from tidings.core.settings import TidingsSettings


class PushSettings(TidingsSettings):
    pass
