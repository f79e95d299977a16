"""Which model plays which agent role. One model may play all four."""

from __future__ import annotations

from dataclasses import dataclass

from flexlearn.models.base import ChatModel
from flexlearn.models.middleware import Meter


@dataclass
class Agents:
    actor: ChatModel
    critic: ChatModel
    distiller: ChatModel
    updater: ChatModel
    # Counts structured replies that never validated (the models' own failures are metered by their stack).
    meter: Meter | None = None

    @classmethod
    def single(cls, model: ChatModel, meter: Meter | None = None) -> Agents:
        return cls(model, model, model, model, meter)

    async def aclose(self) -> None:
        seen: set[int] = set()
        for m in (self.actor, self.critic, self.distiller, self.updater):
            if id(m) not in seen:
                seen.add(id(m))
                await m.aclose()
