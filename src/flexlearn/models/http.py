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


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it removed: user and password, and secret query values.
    Apply it to anything that names an endpoint before it is printed or stored."""
    return _SECRET_PARAM.sub(r"\1=***", _USERINFO.sub(r"\1", text))


async def post(http: httpx.AsyncClient, name: str, url: str, **kwargs: Any) -> httpx.Response:
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
