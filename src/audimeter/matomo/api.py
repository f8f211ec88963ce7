"""A small client for Matomo's Reporting API, used by `audimeter check`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx


class MatomoApiError(Exception):
    """The API could not be reached or answered with an error; the message says which.

    `status` is Matomo's HTTP status, None when there was no answer. Matomo answers 401 when it
    does not know the token.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def error_message(answer: object) -> str | None:
    """The message of an error answer (`{"result": "error", ...}`), None for any other answer."""
    if isinstance(answer, dict) and answer.get("result") == "error":
        return str(answer.get("message") or "error without a message")
    return None


class MatomoApi:
    def __init__(self, client: httpx.AsyncClient, api_url: str, token_auth: str) -> None:
        self._client = client
        self._url = api_url
        self._token = token_auth

    async def call(self, method: str, **params: str) -> Any:
        """The answer of one method; an error answer raises MatomoApiError."""
        # Matomo answers errors (a refused token above all) as JSON only when module, format and
        # method are in the query string; the token stays in the body, out of every access log.
        query = {"module": "API", "format": "json", "method": method}
        try:
            response = await self._client.post(
                self._url, params=query, data={**params, "token_auth": self._token}
            )
        except httpx.TimeoutException:
            raise MatomoApiError(f"no answer from {self._url} within the timeout") from None
        except httpx.HTTPError as exc:
            raise MatomoApiError(
                f"cannot reach {self._url} ({type(exc).__name__}): is matomo.url right?"
            ) from None
        status = response.status_code
        try:
            answer = response.json()
        except ValueError:
            raise MatomoApiError(
                f"{self._url} answered HTTP {status} without JSON; is the url Matomo's base URL?",
                status,
            ) from None
        message = error_message(answer)
        if message is not None:
            raise MatomoApiError(
                message.replace(self._token, "***") if self._token else message, status
            )
        if status != 200:
            raise MatomoApiError(f"{self._url} answered HTTP {status}", status)
        return answer

    async def bulk(self, calls: Sequence[tuple[str, Mapping[str, str]]]) -> list[Any]:
        """The answers of several methods in one round trip (API.getBulkRequest), in order.

        A method that fails answers Matomo's error object (see `error_message`) in its place; a
        failure of the whole request (a refused token) raises MatomoApiError.
        """
        urls = {
            f"urls[{i}]": urlencode({"method": method, **params})
            for i, (method, params) in enumerate(calls)
        }
        answers = await self.call("API.getBulkRequest", **urls)
        if not isinstance(answers, list) or len(answers) != len(calls):
            raise MatomoApiError(f"{self._url} answered a bulk request with something else")
        return answers
