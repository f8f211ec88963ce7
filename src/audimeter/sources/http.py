"""Bounded HTTP fetches for pollers: clear one-line errors, caps on response size and time."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx

from audimeter.sources import SourceError

MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class FetchError(SourceError):
    """A fetch failed; `status` is the server's HTTP status, None when it gave no answer."""

    def __init__(self, message: str, status: int | None = None, kind: str | None = None) -> None:
        if kind is None:
            kind = "refused" if status in (401, 403) else "http"
        super().__init__(message, kind)
        self.status = status

    @property
    def refused(self) -> bool:
        """The server turned the credentials away (or sent a login page's redirect)."""
        return self.status is not None and (self.status in (401, 403) or 300 <= self.status < 400)


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    what: str,
    auth: httpx.Auth | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> bytes:
    """GET `url` and return the body of a 200 answer; anything else raises `FetchError`.

    The whole exchange, body included, must end within the client's read timeout (the source's
    `timeout`): httpx's own timeouts limit each read, so a server sending a byte now and then
    would hold the poll forever.

    `what` names the request in messages; it must not contain the query, which can hold a
    password.
    """
    limit = client.timeout.read
    try:
        async with (
            asyncio.timeout(limit),
            client.stream("GET", url, params=params, auth=auth, headers=headers) as response,
        ):
            status = response.status_code
            if status in (401, 403):
                raise FetchError(
                    f"{what}: credentials refused (HTTP {status}); check username and password",
                    status,
                )
            if status != 200:
                raise FetchError(f"{what}: HTTP {status} {response.reason_phrase}", status)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise FetchError(
                        f"{what}: response larger than {max_bytes} bytes, ignored",
                        status,
                        "too_large",
                    )
            return bytes(body)
    except (TimeoutError, httpx.TimeoutException):
        within = "the timeout" if limit is None else f"{limit:g} s (the timeout)"
        raise FetchError(f"{what}: did not answer within {within}", kind="timeout") from None
    except httpx.ConnectError:
        raise FetchError(
            f"{what}: unreachable (connection refused or no route)", kind="unreachable"
        ) from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{what}: {type(exc).__name__}", kind="transport") from None
