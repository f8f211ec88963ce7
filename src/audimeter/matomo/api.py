"""A small client for Matomo's Reporting API, used by `audimeter check`."""

from __future__ import annotations

from typing import Any

import httpx


class MatomoApiError(Exception):
    """The API could not be reached or answered with an error; the message says which."""


class MatomoApi:
    def __init__(self, client: httpx.AsyncClient, api_url: str, token_auth: str) -> None:
        self._client = client
        self._url = api_url
        self._token = token_auth

    async def call(self, method: str, **params: str) -> Any:
        # POST keeps the token out of URLs, and so out of every access log on the way. Matomo
        # answers errors (a refused token: HTTP 401) as JSON only with these in the query string.
        query = {"module": "API", "format": "json", "method": method}
        form = {**params, "token_auth": self._token}
        try:
            response = await self._client.post(self._url, params=query, data=form)
        except httpx.TimeoutException:
            raise MatomoApiError(f"no answer from {self._url} within the timeout") from None
        except httpx.HTTPError as exc:
            raise MatomoApiError(f"cannot reach {self._url} ({type(exc).__name__})") from None
        try:
            answer = response.json()
        except ValueError:
            raise MatomoApiError(
                f"{self._url} answered HTTP {response.status_code} without JSON; is the url "
                "Matomo's base URL?"
            ) from None
        if isinstance(answer, dict) and answer.get("result") == "error":
            message = str(answer.get("message", "error without a message"))
            raise MatomoApiError(message.replace(self._token, "***") if self._token else message)
        if response.status_code != 200:
            raise MatomoApiError(f"{self._url} answered HTTP {response.status_code}")
        return answer
