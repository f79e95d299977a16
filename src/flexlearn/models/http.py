"""What the HTTP backends share: sending a request, sorting transport failures into transient or not, and
reading what a server says back (its error message, how long to wait, token counts)."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
import urllib.request
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import httpx

from flexlearn.errors import ModelError, TransientModelError

# user:password@ in a URL, and the value of a query parameter that names a secret (?key=, ?api_key=, ?token=...).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]*@")
_SECRET_PARAM = re.compile(
    r"(?i)([?&](?:[a-z0-9_-]*(?:key|token|secret|password|passwd|auth|sig|signature)))=[^&#\s'\"]*"
)


@dataclass(frozen=True)
class Response:
    """A whole HTTP reply, read: what the backends use of one (the names are httpx.Response's, which an
    `httpx.AsyncClient` passed in returns instead). Building an httpx.Response for every reply cost a tenth of
    the client's CPU at concurrency 64."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]  # case-insensitive (aiohttp's CIMultiDictProxy)
    content: bytes
    encoding: str = "utf-8"

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


# Every pool with a session open, so that what a script left open can be closed at its exit (`close_open_on`).
_OPEN: weakref.WeakSet[ClientPool] = weakref.WeakSet()


async def close_open_on(loop: asyncio.AbstractEventLoop) -> None:
    """Close the sessions that pools opened on `loop` (the running one) and that nobody closed: what a script that
    connected to a model and never closed it leaves at its exit, where aiohttp would warn about each."""
    for pool in list(_OPEN):
        session = pool._session
        if session is not None and not session.closed and pool._loop is loop:
            await session.close()
            pool._session = None


class ClientPool:
    """The HTTP backends' own client: an aiohttp session, opened on first use in the running event loop.

    httpx (an `httpx.AsyncClient` may be passed to a backend instead) costs far more CPU a request than aiohttp:
    on this project's 2-core machine, 64 workers sending requests to a 0.2 s server reached 0.89 of the bound on
    httpx clients and 0.96 on one aiohttp session (measured side by side; `benchmarks/throughput.py` reports the
    share its own client reaches). The reply is read whole into a `Response`, within `timeout` seconds of the
    request's start. Like httpx, it honours the proxy variables of the environment and verifies certificates
    (certifi's, or SSL_CERT_FILE).
    """

    def __init__(self, *, timeout: float) -> None:
        # One deadline for the whole call (what `--timeout` promises): a timer re-armed on every read, as httpx's
        # read timeout is, costs a few percent of the client's CPU at concurrency 64.
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # Built once: loading the CA certificates takes milliseconds.
        self._ssl = httpx.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None
        # The proxy for each origin, from the environment (HTTP(S)_PROXY, NO_PROXY), read once per origin:
        # aiohttp's `trust_env` reads the environment again for every request, a few percent of its CPU.
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def is_closed(self) -> bool:
        return self._closed

    def _open(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # A session belongs to the loop it was opened on; a model used from a new loop (a second asyncio.run)
            # opens another. The old one's connections died with their loop.
            # No connection limit (the concurrency limit is the middleware's, `LimitedModel`), and every connection
            # is kept for reuse: at 64 in flight, a pool that keeps fewer makes most requests open a new one.
            connector = aiohttp.TCPConnector(limit=0, ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
            self._loop = loop
            _OPEN.add(self)
        return self._session

    async def post(
        self, url: str, *, json: Any = None, content: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        """POST `json` (encoded) or `content` (as is) and read the whole reply."""
        if self._closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        session = self._open()
        proxy = self._proxy(url)
        async with session.post(url, json=json, data=content, headers=headers, proxy=proxy) as reply:
            body = await reply.read()
            return Response(reply.status, reply.reason or "", reply.headers, body, reply.charset or "utf-8")

    def _proxy(self, url: str) -> str | None:
        parts = urllib.parse.urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        if origin not in self._proxies:
            host = parts.hostname or ""
            bypass = not host or urllib.request.proxy_bypass(host)
            self._proxies[origin] = None if bypass else urllib.request.getproxies().get(parts.scheme)
        return self._proxies[origin]

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None and not self._session.closed and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it removed: user and password, and secret query values.
    Apply it to anything that names an endpoint before it is printed or stored."""
    return _SECRET_PARAM.sub(r"\1=***", _USERINFO.sub(r"\1", text))


async def post(http: httpx.AsyncClient | ClientPool, name: str, url: str, **kwargs: Any) -> httpx.Response | Response:
    """POST, turning the HTTP client's failures into flexlearn's: a timeout or dropped connection may pass
    (retried by the middleware), a malformed URL never will. HTTP statuses are left to the caller, which knows
    its API."""
    try:
        return await http.post(url, **kwargs)
    except (httpx.TimeoutException, TimeoutError) as exc:  # aiohttp's timeouts are TimeoutErrors
        raise TransientModelError(f"{name}: timed out ({type(exc).__name__})") from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL, aiohttp.InvalidURL) as exc:
        raise ModelError(f"{name}: bad URL {redact(url)!r}: {redact(str(exc))}") from exc
    except (httpx.TransportError, aiohttp.ClientConnectionError) as exc:
        raise TransientModelError(f"{name}: connection failed: {redact(str(exc)) or type(exc).__name__}") from exc
    except (httpx.HTTPError, aiohttp.ClientError) as exc:  # e.g. a body that fails to decode: maybe passing
        raise TransientModelError(f"{name}: request failed: {redact(str(exc)) or type(exc).__name__}") from exc


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or an HTTP-date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_message(response: httpx.Response | Response) -> str:
    """The server's own explanation, from the OpenAI/Anthropic error shape when it is there, else the raw body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        if isinstance(body.get("message"), str):
            return body["message"]
        if isinstance(body.get("detail"), str):
            return body["detail"]
    text = response.text.strip()
    return text[:500] if text else (response.reason_phrase or "no message")


def usage_count(usage: Any, key: str) -> int:
    """A token count from a reply's usage object; 0 when absent or malformed."""
    if isinstance(usage, dict):
        value = usage.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return 0
