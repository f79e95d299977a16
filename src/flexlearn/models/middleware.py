"""Wrappers around a `ChatModel`: retries with backoff, a concurrency limit, and per-role metering.

`build_stack` composes them as ``Metered(Limited(Retrying(model)))``:

* The meter is outermost, so one `generate` call of an agent is one metered call whatever happened below it;
  its latency is the wall time the agent waited, including the wait for a concurrency slot and any retry
  backoff. Retries are counted separately (`RoleStats.retries`) through the retrying layer's `on_retry` hook.
* The limiter sits outside the retries on purpose: a call backing off after a 429 keeps its slot, so an
  overloaded server sees fewer requests, not the same number from new callers.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from flexlearn.errors import ConfigError, ModelError, TransientModelError
from flexlearn.models.base import ChatModel, GenerationOptions, Prompt, PromptKind, Reply
from flexlearn.records import CallStats


class _Wrapper(ABC):
    """Forwards `name`, `prompt_kind` and `aclose` to the wrapped model, and `generate` through `_around`.

    A wrapper implements only `_around`, what it does around one call of the inner model. The call it gets passes
    every argument of `generate` on unchanged, so no wrapper can drop one, and an argument added to the seam is
    forwarded here once rather than in every wrapper.
    """

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner

    async def generate(
        self,
        prompt: Prompt,
        *,
        role: str = "actor",
        schema: dict[str, Any] | None = None,
        options: GenerationOptions | None = None,
    ) -> Reply:
        """Call the inner model through this wrapper's `_around`."""

        def call() -> Awaitable[Reply]:
            return self.inner.generate(prompt, role=role, schema=schema, options=options)

        return await self._around(role, call)

    @abstractmethod
    async def _around(self, role: str, call: Callable[[], Awaitable[Reply]]) -> Reply:
        """Run `call` (a fresh inner call each time it is called) for the agent `role`."""

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def prompt_kind(self) -> PromptKind:
        return self.inner.prompt_kind

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


@dataclass
class RetryPolicy:
    """Exponential backoff for transient model errors.

    The n-th wait (n from 0) is ``max(retry_after, base_delay * 2**n)``, capped at `max_delay`, then scaled
    by a random factor in ``[1 - jitter, 1 + jitter]`` and raised back to the server's `retry_after` if the
    jitter took it below. `max_delay` bounds every wait, server hints included, so one call never stalls a
    run for long. `max_attempts` counts the first try.

    `RetryingModel` runs the retries with tenacity and takes each wait from `delay`: tenacity's own waits
    have no server hint to honour, and their jitter is added (`wait_exponential_jitter`) or spans the whole
    wait (`wait_random_exponential`), not this proportional one floored at the hint.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"RetryPolicy.max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ConfigError("RetryPolicy delays must not be negative")
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"RetryPolicy.jitter must be in [0, 1), got {self.jitter}")

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (0 = the first try)."""
        hint = min(retry_after or 0.0, self.max_delay)
        base = min(max(hint, self.base_delay * 2.0**attempt), self.max_delay)
        uniform = rng.uniform if rng is not None else random.uniform
        factor = (1.0 + uniform(-self.jitter, self.jitter)) if self.jitter else 1.0
        return min(self.max_delay, max(hint, base * factor))


class RetryingModel(_Wrapper):
    """Retries `TransientModelError` with the policy's backoff; other errors pass through at once.

    After `policy.max_attempts` failed tries the last error is raised as a (non-transient) `ModelError`
    "gave up after N attempts: ...", chained to it. `on_retry(role, error)` is called before each wait.
    `sleep` and `rng` are injectable so tests need not wait. The loop is tenacity's `AsyncRetrying` (one per
    call: its per-call state is not safe to share between concurrent calls).
    """

    def __init__(
        self,
        inner: ChatModel,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_retry: Callable[[str, TransientModelError], None] | None = None,
    ) -> None:
        super().__init__(inner)
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._rng = rng
        self._on_retry = on_retry

    async def _around(self, role: str, call: Callable[[], Awaitable[Reply]]) -> Reply:
        """Call the inner model, retrying transient failures."""
        # Most calls succeed at once and skip tenacity: its loop costs about 35 us a call even when nothing
        # fails, this plain first try under 1 us (measured on the loaded 2-core machine), and a learning run at
        # concurrency 64 makes 320 calls a second. Only a call that failed transiently enters the loop.
        try:
            return await call()
        except TransientModelError as error:
            first = error
        return await self._retry(role, call, first)

    async def _retry(self, role: str, call: Callable[[], Awaitable[Reply]], first: TransientModelError) -> Reply:
        """The retry loop, entered with the first try's transient error (tenacity's attempt 1)."""
        policy = self.policy

        def wait(state: RetryCallState) -> float:
            # Asked only after a transient error, with the number of the attempt that failed (from 1).
            return policy.delay(state.attempt_number - 1, _error(state).retry_after, self._rng)

        def before_sleep(state: RetryCallState) -> None:
            if self._on_retry is not None:
                self._on_retry(role, _error(state))

        def give_up(state: RetryCallState) -> NoReturn:
            error = _error(state)
            raise ModelError(f"gave up after {policy.max_attempts} attempts: {error}") from error

        retrying = AsyncRetrying(
            sleep=self._pause,
            stop=stop_after_attempt(policy.max_attempts),
            wait=wait,
            retry=retry_if_exception_type(TransientModelError),
            before_sleep=before_sleep,
            retry_error_callback=give_up,
        )
        failed: TransientModelError | None = first
        async for attempt in retrying:
            with attempt:
                if failed is not None:
                    # Attempt 1 is the try `_around` made: tenacity is handed its error.
                    error, failed = failed, None
                    raise error
                return await call()
        raise AssertionError("unreachable")  # tenacity returns the reply or raises

    async def _pause(self, seconds: float) -> None:
        # tenacity passes its DoSleep (a float subclass); the injected sleep sees a plain number.
        await self._sleep(float(seconds))


def _error(state: RetryCallState) -> TransientModelError:
    """The transient error the attempt in `state` failed with (tenacity asks only after one)."""
    error = state.outcome.exception() if state.outcome is not None else None
    if not isinstance(error, TransientModelError):
        raise AssertionError(f"retry state without a transient error: {error!r}")
    return error


class LimitedModel(_Wrapper):
    """At most `max_concurrency` calls of the inner model in flight at once."""

    def __init__(self, inner: ChatModel, max_concurrency: int) -> None:
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1, got {max_concurrency}")
        super().__init__(inner)
        self.max_concurrency = max_concurrency
        self._semaphore = asyncio.Semaphore(max_concurrency)

    async def _around(self, role: str, call: Callable[[], Awaitable[Reply]]) -> Reply:
        """Wait for a slot, then call the inner model."""
        async with self._semaphore:
            return await call()

    @property
    def slots(self) -> asyncio.Semaphore:
        """The call slots themselves: work that calls this model elsewhere (a Ray worker's chain of calls, one at
        a time) holds one while it runs, so the calls in flight stay within `max_concurrency` in all."""
        return self._semaphore


def limiter_of(model: ChatModel) -> LimitedModel | None:
    """The concurrency limit in `model`'s stack (`build_stack`), or None when it has none."""
    while model is not None:
        if isinstance(model, LimitedModel):
            return model
        model = getattr(model, "inner", None)  # type: ignore[assignment]
    return None


# One record of a role's counters, shared with the run records (`results.json` reads what `snapshot` gives).
RoleStats = CallStats


class Meter:
    """Per-role counters. Safe to record from several threads (a local backend may run in a thread pool)."""

    def __init__(self) -> None:
        self._stats: dict[str, RoleStats] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every recorded call (from whichever thread recorded it): a progress display that
        shows calls and tokens as they happen, not only when a problem is done."""
        self._listeners.append(listener)

    def _role(self, role: str) -> RoleStats:
        stats = self._stats.get(role)
        if stats is None:
            stats = self._stats[role] = RoleStats()
        return stats

    def record_call(self, role: str, reply: Reply | None, latency_s: float) -> None:
        """One finished call; `reply=None` means it failed."""
        with self._lock:
            stats = self._role(role)
            stats.calls += 1
            stats.latency_s += latency_s
            if reply is None:
                stats.failures += 1
            else:
                stats.prompt_tokens += reply.usage.prompt_tokens
                stats.completion_tokens += reply.usage.completion_tokens
        for listener in self._listeners:
            listener()

    def record_failure(self, role: str) -> None:
        """A failure found after a successful call (e.g. a structured reply that never validated)."""
        with self._lock:
            self._role(role).failures += 1

    def record_retry(self, role: str, error: Exception | None = None) -> None:
        """One retry of a call (the hook `build_stack` gives `RetryingModel`)."""
        with self._lock:
            self._role(role).retries += 1

    def merge(self, counts: dict[str, dict[str, Any]]) -> None:
        """Add counters recorded elsewhere (another meter's `snapshot`, or the difference of two: a Ray worker's
        calls), then tell the listeners once."""
        if not counts:
            return
        with self._lock:
            for role, stats in counts.items():
                self._stats[role] = self._role(role) + RoleStats(**stats)
        for listener in self._listeners:
            listener()

    def stats(self, role: str) -> RoleStats:
        """A copy of one role's counters (zeros for a role never seen)."""
        with self._lock:
            stats = self._stats.get(role)
            return stats.model_copy() if stats else RoleStats()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every role's counters as plain dicts (JSON-ready), roles sorted by name."""
        with self._lock:
            return {role: self._stats[role].model_dump() for role in sorted(self._stats)}

    def total(self) -> RoleStats:
        """The counters summed over roles."""
        with self._lock:
            total = RoleStats()
            for stats in self._stats.values():
                total = total + stats
            return total


class MeteredModel(_Wrapper):
    """Records every call in a `Meter` under the caller's role."""

    def __init__(self, inner: ChatModel, meter: Meter) -> None:
        super().__init__(inner)
        self.meter = meter

    async def _around(self, role: str, call: Callable[[], Awaitable[Reply]]) -> Reply:
        """Call the inner model and record the outcome, tokens and wall time."""
        started = time.perf_counter()
        try:
            reply = await call()
        except Exception:
            self.meter.record_call(role, None, time.perf_counter() - started)
            raise
        self.meter.record_call(role, reply, time.perf_counter() - started)
        return reply


def build_stack(
    model: ChatModel,
    *,
    max_concurrency: int,
    retry: RetryPolicy | None,
    meter: Meter,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> ChatModel:
    """``Metered(Limited(Retrying(model)))``; `retry=None` leaves out the retrying layer."""
    inner: ChatModel = model
    if retry is not None:
        inner = RetryingModel(inner, retry, sleep=sleep, on_retry=meter.record_retry)
    return MeteredModel(LimitedModel(inner, max_concurrency), meter)
