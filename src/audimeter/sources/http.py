"""Bounded HTTP fetches for pollers: clear one-line errors, a cap on the response size."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from audimeter.sources import SourceError

MAX_RESPONSE_BYTES = 64 * 1024 * 1024


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    what: str,
    auth: httpx.Auth | None = None,
    params: Mapping[str, str] | None = None,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> bytes:
    """GET `url` and return the body of a 200 answer; anything else raises `SourceError`."""
    try:
        async with client.stream("GET", url, params=params, auth=auth) as response:
            if response.status_code in (401, 403):
                raise SourceError(
                    f"{what}: credentials refused (HTTP {response.status_code}); "
                    "check username and password"
                )
            if response.status_code != 200:
                raise SourceError(f"{what}: HTTP {response.status_code} {response.reason_phrase}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise SourceError(f"{what}: response larger than {max_bytes} bytes, ignored")
            return bytes(body)
    except httpx.TimeoutException:
        raise SourceError(f"{what}: no answer within the timeout") from None
    except httpx.ConnectError:
        raise SourceError(f"{what}: unreachable (connection refused or no route)") from None
    except httpx.HTTPError as exc:
        raise SourceError(f"{what}: {type(exc).__name__}") from None
