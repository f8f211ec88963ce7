"""A recording stand-in for Matomo, and an oracle that replays tracking requests into visits.

``RecordingMatomo`` is a real HTTP server on 127.0.0.1 that speaks the parts of Matomo that
audimeter uses: the bulk tracking API (``POST /matomo.php`` with a JSON body) and a few Reporting
API methods (``/index.php?module=API&method=...``). It validates requests the way Matomo does
(site ids, ``token_auth`` for ``cip``/old ``cdt``/location overrides, ``cid`` shape), records every
accepted tracking request, and lets tests inject faults (HTTP errors, slow answers, invalid
requests) at any time. With ``forward_to`` it is a tee in front of a real Matomo: every bulk POST
goes on to the real one, whose answer is returned and decides what is recorded, so a scenario
can be replayed through ``VisitModel`` and compared with the visits the real Matomo shows.

``VisitModel`` turns recorded requests into the visits Matomo would show, following the rules in
``/work/shared/docs/DOMAIN.md`` section 1 (visit_standard_length, pings, events, midnight,
``new_visit``, ``cid``/``uid``). Tests use it as the oracle for "what would Matomo display".

The token is never logged, printed or stored in recorded parameters.
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import hmac
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

__all__ = [
    "DEFAULT_TOKEN",
    "TOKEN_REFUSED",
    "Batch",
    "RecordingMatomo",
    "TrackedRequest",
    "Visit",
    "VisitModel",
    "parse_cdt",
    "request_time",
]

DEFAULT_TOKEN = "0123456789abcdef0123456789abcdef"
TOKEN_REFUSED = "Unable to authenticate with the provided token. It is either invalid or expired."
REDACTED = "<redacted>"

#: Matomo accepts a ``cdt`` up to this many seconds old without ``token_auth``.
CDT_WITHOUT_TOKEN_MAX_AGE = 86400
#: Parameters (besides ``cip`` and an old ``cdt``) that need ``token_auth``.
TOKEN_PARAMS = ("cip", "country", "region", "city", "lat", "long")
#: Matomo starts a new visit once a visit holds this many actions.
MAX_ACTIONS_PER_VISIT = 10_000
#: Matomo's ``default_time_one_page_visit``: the total time stored for a fresh visit.
DEFAULT_TIME_ONE_PAGE_VISIT = 0

_TRACKING_PATHS = ("/matomo.php", "/piwik.php")
_API_PATHS = ("/index.php", "/")
_ERROR_BODY = '{"status":"error","tracked":0,"invalid":0}'
_API_ERROR_PAGE = "<!DOCTYPE html><html><head><title>Matomo &rsaquo; Error</title></head></html>"
#: What the tee answers while the real Matomo cannot be reached (as a reverse proxy would).
_UNREACHABLE_STATUS = 502


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class TrackedRequest:
    """One tracking request that Matomo accepted (valid, ``rec=1``) in a successful batch."""

    params: dict[str, str]
    received_at: float
    batch: int
    index: int


@dataclass(frozen=True)
class Batch:
    """One ``POST /matomo.php``, whatever its outcome.

    ``requests`` holds the parameters of every request in the body (``[]`` when the body could
    not be parsed), ``status``/``body`` the HTTP answer. ``injected`` is true when the answer came
    from ``fail_with``; nothing of such a batch is recorded as tracked.
    """

    number: int
    received_at: float
    requests: list[dict[str, str]]
    status: int
    body: str
    tracked: int = 0
    invalid: int = 0
    invalid_indices: list[int] = field(default_factory=list)
    invalid_reasons: dict[int, str] = field(default_factory=dict)
    ignored_indices: list[int] = field(default_factory=list)
    token_valid: bool = False
    injected: bool = False


@dataclass
class _Faults:
    status: int | None = None
    remaining: int | None = None
    body: str = _ERROR_BODY
    delay: float = 0.0
    invalid: list[Callable[[dict[str, str]], bool]] = field(default_factory=list)
    refused_sites: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class _Reply:
    status: int
    body: str
    content_type: str = "application/json; charset=utf-8"
    delay: float = 0.0


# --------------------------------------------------------------------------- helpers


def parse_cdt(value: str | None) -> int | None:
    """Parse a ``cdt`` value (unix seconds or ``YYYY-MM-DD HH:MM:SS`` UTC); None if unusable."""
    if not value:
        return None
    try:
        return int(float(value))
    except (ValueError, OverflowError):
        pass
    try:
        parsed = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return calendar.timegm(parsed.timetuple())


def request_time(params: Mapping[str, str], received_at: float | None) -> int:
    """The time Matomo gives a request: its ``cdt`` unless absent or in the future, else arrival."""
    cdt = parse_cdt(params.get("cdt"))
    if received_at is None:
        if cdt is None:
            raise ValueError("a request without received_at needs a cdt")
        return cdt
    # Matomo works in whole seconds (PHP time()).
    now = int(received_at)
    # A cdt in the future is ignored: the request then takes the arrival time.
    if cdt is None or cdt > now:
        return now
    return cdt


def _php_string(value: object) -> str:
    """Turn a JSON value of an object-form request into the string PHP would see."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else ""
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _parse_request(raw: object) -> dict[str, str] | None:
    """Parameters of one bulk entry (query string or object), or None if it is neither."""
    if isinstance(raw, str):
        _, sep, query = raw.partition("?")
        if not sep:
            query = raw
        return dict(parse_qsl(query, keep_blank_values=True))
    if isinstance(raw, dict):
        return {str(key): _php_string(value) for key, value in raw.items()}
    return None


def _redact(params: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k == "token_auth" else v) for k, v in params.items()}


def _is_hex16(value: str) -> bool:
    return len(value) == 16 and all(c in "0123456789abcdefABCDEF" for c in value)


def _dumps(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))


# --------------------------------------------------------------------------- the server


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: RecordingMatomo) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client hangs up (e.g. it timed out during ``delay``)."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Keep-alive answers would otherwise wait for the client's delayed ACK (Nagle).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: request lines may carry token_auth."""
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        reply = self.server.owner._dispatch(
            method, self.path, body, self.headers.get("Content-Type") or ""
        )
        if reply.delay > 0:
            time.sleep(reply.delay)
        payload = reply.body.encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class RecordingMatomo:
    """A Matomo double over real HTTP that records tracking requests and injects faults.

    Bind happens in the constructor, so ``url`` is known before ``start()``. Use as a context
    manager, or call ``start()``/``stop()``. All state is guarded by one lock; fault settings may
    be changed from any thread while requests are in flight.

    Outcome of one bulk POST, in order: an injected failure (``fail_with``) answers first and
    records nothing; a malformed body answers 400; otherwise each request is ignored (no
    ``rec=1``: counted as tracked like Matomo's excluded requests, not recorded), invalid
    (counted in ``invalid``) or tracked (recorded). ``delay`` holds the answer back after the
    batch has been recorded, the way a slow Matomo commits before it replies.

    With ``forward_to`` (a real Matomo's base URL) a batch that passes those first two checks goes
    on to the real Matomo: its answer is returned as is, and the requests it tracked (all but its
    ``invalid_indices``) are recorded. While it cannot be reached the tee answers 502.
    """

    def __init__(
        self,
        token_auth: str = DEFAULT_TOKEN,
        site_ids: Iterable[int] = frozenset({1}),
        superuser: bool = False,
        version: str = "5.1.0",
        access: Mapping[int, str] | None = None,
        forward_to: str | None = None,
    ) -> None:
        self._token = token_auth
        self._site_ids = frozenset(int(s) for s in site_ids)
        self._superuser = superuser
        # The token's role (view, write, admin) per site for the Reporting API; write on every
        # site when None. A super user is admin everywhere, as Matomo lists it.
        self._access = dict(access) if access is not None else None
        self._version = version
        self._lock = threading.Lock()
        self._requests: list[TrackedRequest] = []
        self._batches: list[Batch] = []
        self._api_calls: list[str] = []
        self._failed_posts = 0
        self._faults = _Faults()
        # The tee: bulk POSTs go on to this real Matomo (base URL), which decides their outcome.
        self._http = httpx.Client(base_url=forward_to, timeout=60) if forward_to else None
        self._server = _Server(self)
        self._thread: threading.Thread | None = None
        self._stopped = False

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """Base URL with a trailing slash, e.g. ``http://127.0.0.1:PORT/``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def tracking_url(self) -> str:
        """``url`` + ``matomo.php``."""
        return self.url + "matomo.php"

    @property
    def site_ids(self) -> frozenset[int]:
        return self._site_ids

    def start(self) -> RecordingMatomo:
        """Serve in a daemon thread. Idempotent; a stopped server cannot restart."""
        if self._stopped:
            raise RuntimeError("RecordingMatomo was stopped; create a new one")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="recording-matomo",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> RecordingMatomo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RecordingMatomo(url={self.url!r}, site_ids={sorted(self._site_ids)!r})"

    # ----------------------------------------------------------------- records

    @property
    def requests(self) -> list[TrackedRequest]:
        """Tracked requests in arrival order (a copy)."""
        with self._lock:
            return [dataclasses.replace(r, params=dict(r.params)) for r in self._requests]

    @property
    def batches(self) -> list[Batch]:
        """Every bulk POST with its parsed requests and HTTP outcome (a copy)."""
        with self._lock:
            return list(self._batches)

    @property
    def failed_posts(self) -> int:
        """Bulk POSTs answered with an error status (injected faults and malformed bodies)."""
        with self._lock:
            return self._failed_posts

    @property
    def api_calls(self) -> list[str]:
        """Reporting API method names called, in order (tokens are not kept)."""
        with self._lock:
            return list(self._api_calls)

    def clear(self) -> None:
        """Forget recorded requests, batches, API calls and the failed-post count."""
        with self._lock:
            self._clear()

    def take_count(self) -> int:
        """How many requests were recorded since the last `clear` or `take_count`, which then
        forgets them as `clear` does, in one step: a long run counts without keeping them."""
        with self._lock:
            count = len(self._requests)
            self._clear()
        return count

    def _clear(self) -> None:
        self._requests.clear()
        self._batches.clear()
        self._api_calls.clear()
        self._failed_posts = 0

    def model(self, visit_length: int = 1800) -> VisitModel:
        """A ``VisitModel`` of everything tracked so far."""
        return VisitModel(self.requests, visit_length=visit_length)

    # ----------------------------------------------------------------- faults

    def fail_with(self, status: int, count: int | None = None, body: str = _ERROR_BODY) -> None:
        """Answer the next ``count`` bulk POSTs (all until ``recover()`` if None) with ``status``.

        Nothing of a failed batch is tracked; it still shows in ``batches``.
        """
        if count is not None and count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            self._faults.status = status
            self._faults.remaining = count
            self._faults.body = body

    def delay(self, seconds: float) -> None:
        """Hold every answer (tracking and API) back by ``seconds``."""
        with self._lock:
            self._faults.delay = max(0.0, seconds)

    def mark_invalid(self, predicate: Callable[[dict[str, str]], bool]) -> None:
        """Treat tracking requests whose params match ``predicate`` as invalid (cumulative)."""
        with self._lock:
            self._faults.invalid.append(predicate)

    def refuse_sites(self, *site_ids: int) -> None:
        """The token loses write access to ``site_ids`` (or they are deleted): their requests
        that need a token (``cip``, an old ``cdt``) are invalid, as on Matomo 5, and the rest
        of each batch is tracked. ``allow_sites`` gives the access back."""
        with self._lock:
            self._faults.refused_sites.update(site_ids)

    def allow_sites(self, *site_ids: int) -> None:
        """The token may write to ``site_ids`` again."""
        with self._lock:
            self._faults.refused_sites.difference_update(site_ids)

    @property
    def refused_sites(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._faults.refused_sites)

    def recover(self) -> None:
        """Clear every injected fault."""
        with self._lock:
            self._faults = _Faults()

    # ----------------------------------------------------------------- dispatch

    def _dispatch(self, method: str, target: str, body: bytes, content_type: str) -> _Reply:
        parts = urlsplit(target)
        path = parts.path
        if path in _TRACKING_PATHS:
            if method == "POST":
                return self._bulk(body)
            with self._lock:
                delay = self._faults.delay
            return _Reply(
                200, "<p>This resource is part of Matomo.</p>", "text/html; charset=utf-8", delay
            )
        if path in _API_PATHS:
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            params = dict(query)
            if method == "POST" and "json" not in content_type:
                form = body.decode("utf-8", errors="replace")
                params.update(parse_qsl(form, keep_blank_values=True))
            return self._api(params, query)
        with self._lock:
            delay = self._faults.delay
        return _Reply(404, "not found", "text/plain; charset=utf-8", delay)

    def _token_ok(self, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(
            token.encode("utf-8"), self._token.encode("utf-8")
        )

    def _bulk(self, raw_body: bytes) -> _Reply:
        received_at = time.time()
        parsed: Any = None
        try:
            parsed = json.loads(raw_body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            parsed = None
        entries: list[dict[str, str] | None] | None = None
        if isinstance(parsed, dict) and isinstance(parsed.get("requests"), list):
            entries = [_parse_request(r) for r in parsed["requests"]]
        body_token = parsed.get("token_auth") if isinstance(parsed, dict) else None
        token_valid = self._token_ok(body_token)
        shown = [_redact(p) if p is not None else {} for p in entries or []]

        with self._lock:
            number = len(self._batches)
            faults = self._faults
            if faults.status is not None and faults.remaining != 0:
                if faults.remaining is not None:
                    faults.remaining -= 1
                self._failed_posts += 1
                self._batches.append(
                    Batch(number, received_at, shown, faults.status, faults.body, injected=True)
                )
                ctype = "application/json" if faults.body.lstrip().startswith("{") else "text/html"
                return _Reply(faults.status, faults.body, ctype, faults.delay)

            if entries is None or any(e is None for e in entries):
                self._failed_posts += 1
                self._batches.append(
                    Batch(number, received_at, shown, 400, _ERROR_BODY, token_valid=token_valid)
                )
                return _Reply(400, _ERROR_BODY, delay=faults.delay)
        if self._http is not None:
            return self._tee(raw_body, entries, shown, received_at, faults.delay)

        with self._lock:
            # Numbered again: another batch may have been recorded since the checks above.
            number = len(self._batches)
            tracked: list[TrackedRequest] = []
            invalid: dict[int, str] = {}
            ignored: list[int] = []
            for index, params in enumerate(entries):
                assert params is not None
                if params.get("rec") != "1":
                    ignored.append(index)
                    continue
                # A token without access to the site authenticates nothing for it.
                site_token = token_valid and params.get("idsite") not in {
                    str(site) for site in faults.refused_sites
                }
                reason = self._invalid_reason(params, site_token, received_at)
                if reason is None and any(p(dict(params)) for p in faults.invalid):
                    reason = "marked invalid by the test"
                if reason is not None:
                    invalid[index] = reason
                    continue
                tracked.append(TrackedRequest(_redact(params), received_at, number, index))

            answer: dict[str, object] = {
                "status": "success",
                "tracked": len(tracked) + len(ignored),
                "invalid": len(invalid),
            }
            if self._superuser:
                answer["invalid_indices"] = sorted(invalid)
            text = _dumps(answer)
            self._requests.extend(tracked)
            self._batches.append(
                Batch(
                    number,
                    received_at,
                    shown,
                    200,
                    text,
                    tracked=len(tracked) + len(ignored),
                    invalid=len(invalid),
                    invalid_indices=sorted(invalid),
                    invalid_reasons=invalid,
                    ignored_indices=ignored,
                    token_valid=token_valid,
                )
            )
            return _Reply(200, text, delay=faults.delay)

    def _tee(
        self,
        raw_body: bytes,
        entries: list[dict[str, str] | None],
        shown: list[dict[str, str]],
        received_at: float,
        delay: float,
    ) -> _Reply:
        """Forward a bulk POST to the real Matomo; record what it tracked; return its answer."""
        assert self._http is not None
        try:
            response = self._http.post(
                "matomo.php",
                content=raw_body,
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError:
            with self._lock:
                self._failed_posts += 1
                number = len(self._batches)
                self._batches.append(
                    Batch(number, received_at, shown, _UNREACHABLE_STATUS, _ERROR_BODY)
                )
            return _Reply(_UNREACHABLE_STATUS, _ERROR_BODY, delay=delay)
        text = response.text
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        ok = response.status_code == 200 and isinstance(answer, dict)
        ok = ok and answer.get("status") == "success"
        tracked_indices: list[int] = []
        invalid_indices: list[int] = []
        ignored: list[int] = []
        if ok:
            assert isinstance(answer, dict)
            invalid_count = int(answer.get("invalid", 0))
            invalid_indices = [int(i) for i in answer.get("invalid_indices", [])]
            for index, params in enumerate(entries):
                assert params is not None
                if params.get("rec") != "1":
                    ignored.append(index)
                # Without invalid_indices (not a super user) an invalid request cannot be
                # told apart, so such a batch records nothing rather than guess.
                elif index not in invalid_indices and (invalid_indices or not invalid_count):
                    tracked_indices.append(index)
        with self._lock:
            number = len(self._batches)
            if not ok:
                self._failed_posts += 1
            self._requests.extend(
                TrackedRequest(_redact(entries[i] or {}), received_at, number, i)
                for i in tracked_indices
            )
            self._batches.append(
                Batch(
                    number,
                    received_at,
                    shown,
                    response.status_code,
                    text,
                    tracked=len(tracked_indices) + len(ignored),
                    invalid=len(entries) - len(tracked_indices) - len(ignored) if ok else 0,
                    invalid_indices=invalid_indices,
                    ignored_indices=ignored,
                    token_valid=ok,
                )
            )
        ctype = response.headers.get("Content-Type", "application/json")
        return _Reply(response.status_code, text, ctype, delay)

    def _invalid_reason(
        self, params: Mapping[str, str], bulk_token_valid: bool, now: float
    ) -> str | None:
        """Why Matomo would refuse this request, or None if it would track it."""
        idsite = params.get("idsite", "")
        if not idsite.strip().isdigit() or int(idsite) not in self._site_ids:
            return f"unexpected website: idsite={idsite!r}"
        cid = params.get("cid")
        if cid is not None and cid != "" and not _is_hex16(cid):
            return "cid must be 16 hexadecimal characters"
        authenticated = bulk_token_valid or self._token_ok(params.get("token_auth"))
        if authenticated:
            return None
        for name in TOKEN_PARAMS:
            if params.get(name):
                return f"{name} requires token_auth"
        cdt = parse_cdt(params.get("cdt"))
        if cdt is not None and cdt <= int(now) and int(now) - cdt >= CDT_WITHOUT_TOKEN_MAX_AGE:
            return "cdt older than 24 hours requires token_auth"
        return None

    # ----------------------------------------------------------------- reporting API

    def _role(self, token: object, site: int) -> str | None:
        """The role (view, write, admin) of the token's user on `site`; None without access."""
        if not self._token_ok(token) or site not in self._site_ids:
            return None
        with self._lock:
            if site in self._faults.refused_sites:
                return None
        if self._superuser:
            return "admin"
        return self._access.get(site) if self._access is not None else "write"

    def _api(self, params: Mapping[str, str], query: Mapping[str, str]) -> _Reply:
        """One Reporting API request, answered as Matomo 5 answers it (statuses included)."""
        method = params.get("method", "")
        with self._lock:
            self._api_calls.append(method)
            delay = self._faults.delay
        if params.get("module") != "API":
            return _Reply(200, _API_ERROR_PAGE, "text/html; charset=utf-8", delay)
        token = params.get("token_auth") or None
        if token is not None and not self._token_ok(token):
            # Matomo knows the answer should be JSON only when the query string says so.
            if all(key in query for key in ("module", "format", "method")):
                return _Reply(401, _dumps(_api_error(TOKEN_REFUSED)), delay=delay)
            return _Reply(401, _API_ERROR_PAGE, "text/html; charset=utf-8", delay)
        if method == "API.getBulkRequest":
            calls = sorted(
                (int(key[5:-1]), dict(parse_qsl(value, keep_blank_values=True)))
                for key, value in params.items()
                if key.startswith("urls[") and key.endswith("]") and key[5:-1].isdigit()
            )
            answers = [
                self._api_method(call.get("method", ""), call, token)[1] for _, call in calls
            ]
            return _Reply(200, _dumps(answers), delay=delay)
        status, answer = self._api_method(method, params, token)
        return _Reply(status, _dumps(answer), delay=delay)

    def _api_method(
        self, method: str, params: Mapping[str, str], token: str | None
    ) -> tuple[int, object]:
        """HTTP status and answer of one method, for a known token or none (anonymous)."""
        roles = {site: self._role(token, site) for site in sorted(self._site_ids)}
        if method == "API.getMatomoVersion":
            if not any(roles.values()):
                return 401, _api_error(
                    "You can't access this resource as it requires view access for at least one"
                    " website."
                )
            return 200, {"value": self._version}
        if method == "UsersManager.hasSuperUserAccess":
            return 200, {"value": self._superuser and token is not None}
        for role in ("admin", "write", "view"):
            if method == f"SitesManager.getSitesIdWith{role.title()}Access":
                return 200, [site for site, has in roles.items() if has == role]
        if method == "SitesManager.getSiteFromId":
            raw = params.get("idSite", "")
            if raw.strip().isdigit() and roles.get(int(raw)):
                site = int(raw)
                return 200, {
                    "idsite": site,
                    "name": f"Site {site}",
                    "main_url": "https://example.org",
                }
            if self._superuser and token is not None:
                return 200, _api_error(
                    "An unexpected website was found in the request: website id was set to"
                    f" '{raw}' ."
                )
            return 401, _api_error(
                "You can't access this resource as it requires 'view' access for the website"
                f" id = {raw}."
            )
        module, _, name = method.partition(".")
        return 200, _api_error(
            f"The method '{name}' does not exist or is not available in the module"
            f" '\\Piwik\\Plugins\\{module}\\API'."
        )


def _api_error(message: str) -> dict[str, str]:
    return {"result": "error", "message": message}


# --------------------------------------------------------------------------- the oracle


@dataclass
class Visit:
    """A visit as Matomo would show it (``visitDuration`` is ``total_time``)."""

    visitor_id: str
    first_action: int
    last_action: int
    total_time: int
    actions: list[dict[str, str]]
    ip: str | None
    user_agent: str | None
    entry_url: str | None
    out_of_order: bool = False
    site_id: str = ""
    pings: int = 0
    last_request: int = 0


Tracked = TrackedRequest | Mapping[str, str]


class VisitModel:
    """Replay tracking requests (in arrival order) into Matomo's visits.

    ``requests`` are ``TrackedRequest`` objects or plain parameter mappings (which then need a
    ``cdt``). ``visit_length`` is Matomo's ``[Tracker] visit_standard_length`` in seconds. The
    site's timezone is taken to be UTC. Not modelled: bot detection, goals, ecommerce, ``_id``,
    and the visitor id Matomo gives a new visit opened without ``cid`` or ``uid``. Checked
    against a real Matomo 5.0.2 by ``tests/realmatomo`` (the stand-in as a tee).
    """

    def __init__(self, requests: Iterable[Tracked], visit_length: int = 1800) -> None:
        self.visit_length = visit_length
        self._visits: list[Visit] = []
        self._current: dict[tuple[str, str], Visit] = {}
        # Visits by fingerprint (site, address, player), for requests without cid or uid.
        self._by_fingerprint: dict[tuple[str, str, str], list[Visit]] = {}
        #: pings that matched no live visit (Matomo answers success and drops them)
        self.dropped_pings: list[dict[str, str]] = []
        #: requests without rec=1
        self.ignored: list[dict[str, str]] = []
        for item in requests:
            self._replay(item)

    @staticmethod
    def visitor_id(params: Mapping[str, str]) -> str:
        """The id Matomo keys the visitor on."""
        # uid takes priority over cid: the visitor id is derived from the user id.
        uid = params.get("uid")
        if uid:
            return hashlib.sha1(uid.encode("utf-8")).hexdigest()[:16]  # noqa: S324
        # cid forces the visitor id; matching then uses that id alone.
        cid = params.get("cid")
        if cid:
            return cid.lower()
        # Without cid Matomo fingerprints the request; here: user agent + IP (cip or sender).
        basis = f"{params.get('ua', '')}\x00{params.get('cip', '')}"
        return hashlib.sha1(basis.encode("utf-8")).hexdigest()[:16]  # noqa: S324

    @staticmethod
    def kind(params: Mapping[str, str]) -> str:
        """``ping``, ``event`` or ``pageview``."""
        # ping=1 is a heartbeat, never an action.
        if params.get("ping") == "1":
            return "ping"
        # An event needs both a category and an action.
        if params.get("e_c") and params.get("e_a"):
            return "event"
        # Anything else is a pageview, even without url or action_name and even with e_c alone
        # (measured on Matomo 5.0.2: each such request is an action of the visit).
        return "pageview"

    def _replay(self, item: Tracked) -> None:
        if isinstance(item, TrackedRequest):
            params: Mapping[str, str] = item.params
            received: float | None = item.received_at
        else:
            params, received = item, None
        # Requests without rec=1 are accepted and ignored.
        if params.get("rec") != "1":
            self.ignored.append(dict(params))
            return
        kind = self.kind(params)
        t = request_time(params, received)
        site = params.get("idsite", "")
        key = (site, self.visitor_id(params))
        fingerprint = (site, params.get("cip", ""), params.get("ua", ""))
        visit = self._current.get(key)
        if not params.get("uid") and not params.get("cid"):
            # Without cid or uid Matomo looks the visitor up by fingerprint: the live visit of
            # that address and player with the latest action, whatever its visitor id.
            live = [v for v in self._by_fingerprint.get(fingerprint, []) if self._live(v, t)]
            visit = max(live, key=lambda v: v.last_action, default=None)
        joins = (
            visit is not None
            and self._live(visit, t)
            # new_visit=1 forces a new visit.
            and params.get("new_visit") != "1"
            # A visit holds at most 10,000 actions.
            and len(visit.actions) < MAX_ACTIONS_PER_VISIT
        )
        if kind == "ping":
            if not joins or visit is None:
                # A ping that matches no live visit is dropped and creates no visit.
                self.dropped_pings.append(dict(params))
                return
            self._note_order(visit, t)
            visit.pings += 1
            # A ping leaves last_action alone and only raises the total time.
            visit.total_time = max(visit.total_time, 1 + t - visit.first_action)
            return
        if joins and visit is not None:
            self._note_order(visit, t)
            visit.actions.append(dict(params))
            # last_action never moves backwards (an older request is flagged above).
            visit.last_action = max(visit.last_action, t)
            # An action sets total = t - first + 1, which an older cdt lowers (floor 0).
            visit.total_time = max(0, t - visit.first_action + 1)
            return
        # Otherwise the action opens a new visit, stored with default_time_one_page_visit.
        fresh = Visit(
            visitor_id=key[1],
            first_action=t,
            last_action=t,
            total_time=DEFAULT_TIME_ONE_PAGE_VISIT,
            actions=[dict(params)],
            ip=params.get("cip"),
            user_agent=params.get("ua"),
            entry_url=params.get("url"),
            site_id=key[0],
            last_request=t,
        )
        self._visits.append(fresh)
        self._current[key] = fresh
        self._by_fingerprint.setdefault(fingerprint, []).append(fresh)

    def _live(self, visit: Visit, t: int) -> bool:
        """Whether a request at ``t`` can still join ``visit``."""
        # The visit is live while its last action is newer than visit_standard_length, and
        # crossing midnight (site timezone, UTC here) starts a new visit.
        recent = visit.last_action > t - self.visit_length
        return recent and _utc_day(visit.last_action) == _utc_day(t)

    @staticmethod
    def _note_order(visit: Visit, t: int) -> None:
        # Requests of one visitor must arrive in time order; remember when one did not.
        if t < visit.last_request:
            visit.out_of_order = True
        visit.last_request = max(visit.last_request, t)

    def visits(self) -> list[Visit]:
        """All visits, in the order they were opened."""
        return list(self._visits)

    def online(self, now: float, minutes: int = 3, site_id: str | None = None) -> int:
        """Visits whose last action is within ``minutes`` of ``now`` (Live.getCounters)."""
        # Only last_action counts, so visits kept up by pings alone are not online.
        since = now - minutes * 60
        return sum(
            1
            for v in self._visits
            if v.last_action >= since and (site_id is None or v.site_id == site_id)
        )


def _utc_day(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")
