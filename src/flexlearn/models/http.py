"""What the HTTP backends share: sending a request and sorting transport failures into transient or not."""

from __future__ import annotations

from typing import Any

import httpx

from flexlearn.errors import ModelError, TransientModelError


async def post(http: httpx.AsyncClient, name: str, url: str, **kwargs: Any) -> httpx.Response:
    """POST, turning httpx's failures into flexlearn's: a timeout or dropped connection may pass (retried by the
    middleware), a malformed URL never will. HTTP statuses are left to the caller, which knows its API."""
    try:
        return await http.post(url, **kwargs)
    except httpx.TimeoutException as exc:
        raise TransientModelError(f"{name}: timed out ({type(exc).__name__})") from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ModelError(f"{name}: bad URL {url!r}: {exc}") from exc
    except httpx.TransportError as exc:
        raise TransientModelError(f"{name}: connection failed: {exc or type(exc).__name__}") from exc
    except httpx.HTTPError as exc:  # e.g. a body that fails to decode: the server's fault, maybe passing
        raise TransientModelError(f"{name}: request failed: {exc or type(exc).__name__}") from exc
