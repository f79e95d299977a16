"""Which model plays which agent role. One model may play all four."""

from __future__ import annotations

from types import TracebackType

from flexlearn._sync import run_sync
from flexlearn.models.base import ChatModel
from flexlearn.models.middleware import Meter

ROLES = ("actor", "critic", "distiller", "updater")


class Agents:
    """The models behind FLEX's four roles: the actor solves, the critic gives feedback (and judges blind in the
    agent baseline), the distiller writes experiences, the updater folds them into the library.

    `Agents(actor=model)` lets one model play every role; a role given no model of its own uses the actor's.
    `meter` counts structured replies that never validated (each model's own calls are metered by its stack);
    by default it is the actor's meter when the actor has one (a model from `flexlearn.connect`).

    Close the models with `close()` (or `aclose()` in async code), or use the agents as a context manager;
    a model shared by several roles is closed once.
    """

    def __init__(
        self,
        actor: ChatModel,
        critic: ChatModel | None = None,
        distiller: ChatModel | None = None,
        updater: ChatModel | None = None,
        meter: Meter | None = None,
    ) -> None:
        self.actor = actor
        self.critic = critic or actor
        self.distiller = distiller or actor
        self.updater = updater or actor
        self.meter = meter if meter is not None else getattr(actor, "meter", None)

    @classmethod
    def single(cls, model: ChatModel, meter: Meter | None = None) -> Agents:
        """One model in every role."""
        return cls(model, meter=meter)

    def models(self, *roles: str) -> dict[str, str]:
        """Each role's model name (of `roles` only, when given), for run records and provenance."""
        return {role: getattr(self, role).name for role in roles or ROLES}

    def __repr__(self) -> str:
        names = ", ".join(f"{role}={name!r}" for role, name in self.models().items())
        return f"Agents({names})"

    async def aclose(self) -> None:
        """Close every distinct model once."""
        seen: set[int] = set()
        for m in (self.actor, self.critic, self.distiller, self.updater):
            if id(m) not in seen:
                seen.add(id(m))
                await m.aclose()

    def close(self) -> None:
        """`aclose` for synchronous code (on the loop that `flexlearn`'s synchronous functions use)."""
        run_sync(self.aclose())

    def __enter__(self) -> Agents:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Agents:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
