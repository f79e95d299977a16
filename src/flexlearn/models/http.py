"""What the HTTP backends share: sending a request, sorting transport failures into transient or not, and
reading what a server says back (its error message, how long to wait, token counts)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from flexlearn.errors import ModelError, TransientModelError

# user:password@ in a URL, and the value of a query parameter that names a secret (?key=, ?api_key=, ?token=...).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]*@")
_SECRET_PARAM = re.compile(
    r"(?i)([?&](?:[a-z0-9_-]*(?:key|token|secret|password|passwd|auth|sig|signature)))=[^&#\s'\"]*"
)


# The concurrency limit is the middleware's (`LimitedModel`), so the pool sets none of its own; and it keeps every
# connection it opened: httpx's default keeps 20, so at a concurrency of 64 two requests in three paid for a new
# TCP connection (and a TLS handshake, remotely).
CONNECTION_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=None)

# Requests in flight on one httpx client of a `ClientPool`, at most.
REQUESTS_PER_CLIENT = 4


class ClientPool:
    """httpx clients that share out one backend's requests, at most `per_client` in flight on each.

    httpcore's connection pool does work quadratic in its number of connections every time a request starts or a
    response ends (encode/httpcore#1035, open in httpcore 1.0.9): with 64 requests in flight on one client that
    cost several milliseconds of CPU a request, most of a learning run's. Each client here holds no more
    connections than it ever had requests in flight, so that work stays small; a client is opened when every open
    one is full, so `c` requests at once need about c / per_client of them. The requests themselves are httpx's:
    same URL, body, headers, timeouts.
    """

    def __init__(
        self, *, timeout: float, limits: httpx.Limits = CONNECTION_LIMITS, per_client: int = REQUESTS_PER_CLIENT
    ) -> None:
        if per_client < 1:
            raise ValueError(f"per_client must be at least 1, got {per_client}")
        self._timeout = httpx.Timeout(timeout)
        self._limits = limits
        # What each client would build for itself (verify=True, trust_env=True: SSL_CERT_FILE or certifi), built
        # once: loading the CA certificates takes milliseconds, for every client opened mid-run.
        self._ssl = httpx.create_ssl_context()
        self._per_client = per_client
        # The first client now, as a single shared client was before: the cost of building one (and the first
        # use of httpcore) is paid when the model is made, not by its first request.
        self._clients = [self._new_client()]
        self._in_flight = [0]
        self._closed = False

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self._timeout, limits=self._limits, verify=self._ssl)

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def clients(self) -> int:
        """How many httpx clients it has opened."""
        return len(self._clients)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """`httpx.AsyncClient.post` on the first client with room (a new one when all are full)."""
        if self._closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        i = next((i for i, n in enumerate(self._in_flight) if n < self._per_client), len(self._clients))
        if i == len(self._clients):
            self._clients.append(self._new_client())
            self._in_flight.append(0)
        self._in_flight[i] += 1
        try:
            return await self._clients[i].post(url, **kwargs)
        finally:
            self._in_flight[i] -= 1

    async def aclose(self) -> None:
        self._closed = True
        for client in self._clients:
            await client.aclose()


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it removed: user and password, and secret query values.
    Apply it to anything that names an endpoint before it is printed or stored."""
    return _SECRET_PARAM.sub(r"\1=***", _USERINFO.sub(r"\1", text))


async def post(http: httpx.AsyncClient | ClientPool, name: str, url: str, **kwargs: Any) -> httpx.Response:
    """POST, turning httpx's failures into flexlearn's: a timeout or dropped connection may pass (retried by the
    middleware), a malformed URL never will. HTTP statuses are left to the caller, which knows its API."""
    try:
        return await http.post(url, **kwargs)
    except httpx.TimeoutException as exc:
        raise TransientModelError(f"{name}: timed out ({type(exc).__name__})") from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ModelError(f"{name}: bad URL {redact(url)!r}: {redact(str(exc))}") from exc
    except httpx.TransportError as exc:
        raise TransientModelError(f"{name}: connection failed: {redact(str(exc)) or type(exc).__name__}") from exc
    except httpx.HTTPError as exc:  # e.g. a body that fails to decode: the server's fault, maybe passing
        raise TransientModelError(f"{name}: request failed: {redact(str(exc)) or type(exc).__name__}") from exc


def parse_retry_after(headers: httpx.Headers) -> float | None:
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


def error_message(response: httpx.Response) -> str:
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
