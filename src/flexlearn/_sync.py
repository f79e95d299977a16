"""Running flexlearn's coroutines from synchronous code: scripts, and notebooks whose own loop is running.

Every synchronous call goes to one event loop that flexlearn runs in a daemon thread, whether or not the caller
has a loop of its own. One loop, not a fresh `asyncio.run` per call, because a model outlives a call: its HTTP
connection pool and its concurrency limit belong to the loop they were first used on, so `learn` and then
`evaluate` with the same model must run on the same loop. The caller blocks until the coroutine is done;
Ctrl-C cancels it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from flexlearn.errors import ConfigError

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _close_at_exit() -> None:
    """At interpreter exit: close the HTTP sessions opened on the background loop (a script's models are rarely
    closed by hand, and aiohttp warns about every session left open), then stop the loop."""
    loop, thread = _loop, _thread
    if loop is None or thread is None or not thread.is_alive():
        return
    from flexlearn.models.http import close_open_on

    async def close() -> None:
        await close_open_on(asyncio.get_running_loop())

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
    loop.call_soon_threadsafe(loop.stop)


atexit.register(_close_at_exit)


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="flexlearn-sync", daemon=True)
            thread.start()
            _loop, _thread = loop, thread
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on flexlearn's background loop and return its result (or raise its error)."""
    loop = _background_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise ConfigError(
            "a synchronous flexlearn call was made from inside a flexlearn coroutine or callback; "
            "use the async form (alearn, aevaluate, asolve, arecord) there"
        )
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        raise
