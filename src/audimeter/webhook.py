"""The receiver for Icecast's URL authentication: exact joins and leaves, as they happen.

Theory of operation
-------------------
A mount configured with `<authentication type="url">` makes Icecast POST a form for every
listener: `listener_add` when one connects (Icecast 2.5 may call it `client_add`) and
`listener_remove` when one leaves, with the listener's id, address, player, the raw URI it asked
for (query string included) and whichever request headers the `headers` option forwards. Polling
`/admin/listclients` knows none of the query string and sees a listener only once per poll; these
forms give the exact moments, the query string and the referrer.

Icecast lets the listener in only if the answer carries a header starting with its `auth_header`
(`icecast-auth-user: 1` by default; 2.5 also reads `x-icecast-auth-result: ok`); the status code is
ignored. So the receiver is on the listener's path, and its rules follow from that:

* Every authenticated form for a known source is answered with the accept headers, within a few
  milliseconds. A form that cannot be parsed, or an inbox file that cannot be written, is logged
  and the listener is still let in: audimeter counts listeners, it never turns one away.
* Before answering, the event is handed to `record`, which returns once it is on disk (the
  daemon gives the inbox file's append, committed with synchronous=FULL), then `notify` wakes
  the daemon, which turns inbox rows into observations and commits how far it took them in the
  same transaction as the outcome (audimeter.inbox). An event acknowledged to Icecast is
  therefore never lost by a crash of audimeter, and no network I/O happens in the handler.
* `record` runs on a writer thread, and is given every event that arrived while the previous
  call was on the disk, in one commit: a flush to disk takes 1-10 ms, and 100-300 ms while the
  daemon or an import writes much, and one after another each would wait for all before it.
  The event loop meanwhile reads and answers the other requests.
* `audimeter run` runs the receiver in a process of its own (audimeter.webhookprocess), on a
  thread and event loop of its own there, writing through a connection of its own to the inbox
  file, which no long transaction holds (the daemon's commits and an import's are in the state
  file). So no answer is queued behind the daemon's work, nor behind its interpreter lock: what
  an answer waits for is its own insert, the disk and a CPU (benchmarks/bench_webhook.py
  measures it while the daemon polls 100,000 listeners and an import runs).
* Requests without the configured HTTP Basic credentials get 401 and no accept header. Icecast
  sends credentials only when the mount has the `username` and `password` options; without them
  it forwards the *listener's* credentials, which audimeter refuses.
* Icecast 2.5 also asks about every admin request on such a mount (audimeter's own polls of
  `/admin/listclients?mount=…`), with the admin's user and password in the form. These are let
  in without writing anything to the inbox or logging any of their fields.
* `stream_auth` (source-client authentication) is never approved: pointing it here would let any
  source client in.

The risk that remains is Icecast's: while the receiver is down, Icecast refuses every new listener
on the mount at once (after 15 s when it is slow). Run audimeter supervised, with the receiver on
loopback next to Icecast.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import errno
import hmac
import json
import logging
import os
import socket
import threading
import time
import typing
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, unquote

from audimeter.addresses import parse_address
from audimeter.config import WebhookConfig
from audimeter.observations import ListenerJoined, ListenerLeft

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

WebhookObservation = ListenerJoined | ListenerLeft

Recorder = Callable[..., object]
"""Records inbox payloads (`encode`, each an argument) durably, in their order and all or none:
returns once they are on disk, raises if it cannot. Called from the receiver's writer thread."""

ROUTE: Final = "/icecast/{source}"
ACCEPT_HEADERS: Final = {"icecast-auth-user": "1", "x-icecast-auth-result": "ok"}
"""The answer that lets a listener in: 2.4 reads the first, 2.5 either."""

JOIN_ACTIONS: Final = frozenset({"listener_add", "client_add"})
LEAVE_ACTIONS: Final = frozenset({"listener_remove", "client_remove"})
SOURCE_AUTH_ACTION: Final = "stream_auth"
ADMIN: Final = "/admin"
"""Icecast's admin interface. Icecast 2.5 sends a `listener_add` for each request to it that
names a URL-authentication mount (`mount=/admin/listclients?mount=…`), with the admin's `user`
and `pass`: it is let in and nothing of it is recorded or logged."""

HEADER_PREFIXES: Final = ("clientheader.", "")
"""Prefixes of forwarded request headers, lower-cased: the one the Icecast documentation shows,
then none (Icecast's default when `header_prefix` is not set)."""

_TYPES: Final[dict[str, type[WebhookObservation]]] = {
    "listener_joined": ListenerJoined,
    "listener_left": ListenerLeft,
}


class FormError(ValueError):
    """A form from Icecast lacks a field the event needs, or has one that makes no sense."""


class WebhookError(Exception):
    """The receiver cannot start; the message says why."""


# -- forms ----------------------------------------------------------------------------------------


def decode_form(body: bytes) -> dict[str, str]:
    """The fields of an `application/x-www-form-urlencoded` body (the last of repeated names)."""
    text = body.decode("utf-8", "replace")
    return dict(parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace"))


def _required(fields: Mapping[str, str], name: str, action: str) -> str:
    value = fields.get(name, "")
    if not value:
        raise FormError(f"{action} without {name}")
    return value


def _forwarded(lowered: Mapping[str, str], header: str) -> str:
    """A request header Icecast forwarded (`headers` option), from lower-cased field names."""
    for prefix in HEADER_PREFIXES:
        value = lowered.get(prefix + header)
        if value is not None:
            return value
    return ""


def _split_mount(raw: str, action: str) -> tuple[str, str]:
    """(mount, query) from the `mount` field: the request URI as the listener sent it.

    The path is still percent-encoded (Icecast 2.4.4 sends `/a%2Emp3` for a listener of `/a.mp3`),
    so it is decoded to the mount name Icecast lists; the query string stays raw.
    """
    path, _, query = raw.partition("?")
    path = unquote(path)
    if not path.startswith("/"):
        raise FormError(f"{action}: mount does not start with /")
    return path, query


def parse_form(fields: Mapping[str, str], source: str, now: int) -> WebhookObservation | None:
    """The observation one URL-authentication form reports, or None if it reports none.

    Joins and leaves become `ListenerJoined` and `ListenerLeft` at `now`; mount and other
    actions, and requests to the admin interface, None. Raises `FormError` when a join or leave
    lacks what makes it one.
    """
    action = fields.get("action", "")
    if action not in JOIN_ACTIONS and action not in LEAVE_ACTIONS:
        return None  # mount_add and mount_remove (a source came or went), or unknown
    mount, query = _split_mount(_required(fields, "mount", action), action)
    if mount == ADMIN or mount.startswith(ADMIN + "/"):
        return None  # Icecast 2.5 asks about every admin request (audimeter's polls) too
    client_id = _required(fields, "client", action)
    ip = fields.get("ip", "")
    user_agent = fields.get("agent", "")
    lowered = {name.lower(): value for name, value in fields.items()}
    referrer = _forwarded(lowered, "referer")
    forwarded_for = _forwarded(lowered, "x-forwarded-for")
    if action in JOIN_ACTIONS:
        return ListenerJoined(
            source=source,
            at=now,
            mount=mount,
            client_id=client_id,
            ip=ip,
            user_agent=user_agent,
            referrer=referrer,
            query=query,
            forwarded_for=forwarded_for,
        )
    duration = _required(fields, "duration", action)
    if not duration.isascii() or not duration.isdigit():
        raise FormError(f"{action}: duration {duration[:20]!r} is not a whole number of seconds")
    return ListenerLeft(
        source=source,
        at=now,
        mount=mount,
        duration=int(duration),
        client_id=client_id,
        ip=ip,
        user_agent=user_agent,
        referrer=referrer,
        query=query,
        forwarded_for=forwarded_for,
    )


# -- inbox payloads -------------------------------------------------------------------------------


def encode(observation: WebhookObservation) -> str:
    """The inbox payload of an observation: a JSON object with a "type" and every field."""
    kind = "listener_joined" if isinstance(observation, ListenerJoined) else "listener_left"
    data: dict[str, Any] = {"type": kind, **dataclasses.asdict(observation)}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def decode(payload: str) -> WebhookObservation:
    """The observation `encode` turned into `payload`; ValueError if it is not one.

    Keys this version does not know are ignored, so a payload from a newer audimeter still gives
    the observation it can.
    """
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ValueError(f"inbox payload is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("inbox payload is not a JSON object")
    kind = data.get("type")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"inbox payload has unknown type {kind!r}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            if field.default is dataclasses.MISSING:
                raise ValueError(f"inbox payload lacks {field.name!r}")
            continue
        value = data[field.name]
        expected = hints[field.name]
        if type(value) is not expected:
            raise ValueError(f"inbox payload: {field.name!r} is not {expected.__name__}")
        values[field.name] = value
    return cls(**values)


# -- the receiver ---------------------------------------------------------------------------------


def bind_failure(
    exc: OSError,
    table: str = "webhook",
    follow: str = "change Icecast's listener_add and listener_remove URLs to match",
) -> str:
    """What went wrong and what to do when a server of `[table] listen` cannot listen; `follow`
    says what else must change with the port. asyncio's own message would repeat the address."""
    if exc.errno == errno.EADDRINUSE:
        return (
            "another program listens there (audimeter already running?); stop it, or choose "
            f"another port with [{table}] listen and {follow}"
        )
    if isinstance(exc, socket.gaierror) or not exc.errno:
        reason = exc.strerror or str(exc)
    else:
        reason = os.strerror(exc.errno).lower()
    return f"{reason}; check the host and port of [{table}] listen"


def _end_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    address = parse_address(host)
    return address is not None and address.is_loopback


class WebhookReceiver:
    """An HTTP server for Icecast's URL authentication: `POST /icecast/{source}`.

    `start` runs it in a thread with an event loop of its own and a writer thread, `stop` ends
    them. `notify` is called from the loop's thread: it must hand over to the daemon's loop
    thread-safely (`loop.call_soon_threadsafe`). `record` is called from the writer thread, one
    call at a time, and must use a database connection that no other thread uses meanwhile.
    """

    def __init__(
        self,
        config: WebhookConfig,
        sources: Collection[str],
        record: Recorder,
        notify: Callable[[], object],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._sources = frozenset(sources)
        self._record_payload = record
        self._notify = notify
        self._clock = clock
        secret = f"{config.username}:{config.password.get_secret_value()}"
        self._credentials = secret.encode("utf-8")
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[tuple[str, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self.received = 0
        """Authenticated forms for a known source, each answered with the accept headers."""
        self.recorded = 0
        """Joins and leaves recorded in the inbox."""
        self.failed = 0
        """Forms accepted without recording their event (malformed, or `record` failed)."""
        self.refused = 0
        """Requests turned away: no or wrong credentials, an unknown source, a source client."""

    @property
    def port(self) -> int:
        """The TCP port the receiver listens on (the real one when configured with port 0)."""
        if self._port is None:
            raise RuntimeError("the webhook receiver is not started")
        return self._port

    def start(self) -> None:
        """Listen from a new thread; returns once listening. `WebhookError` if it cannot."""
        if self._thread is not None:
            raise RuntimeError("the webhook receiver is already started")
        loop = asyncio.new_event_loop()
        # A daemon thread: a daemon that dies without `stop` is not kept alive by it.
        thread = threading.Thread(target=loop.run_forever, name="audimeter-webhook", daemon=True)
        thread.start()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="audimeter-webhook-writer")
        try:
            asyncio.run_coroutine_threadsafe(self._listen(), loop).result()
        except BaseException:
            _end_loop(loop, thread)
            self._writer.shutdown()
            raise
        self._loop, self._thread = loop, thread

    def stop(self) -> None:
        """Stop listening, let requests in progress finish (2 s at most), end the thread."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result()
        finally:
            _end_loop(loop, thread)
            if self._writer is not None:
                self._writer.shutdown()

    async def _listen(self) -> None:
        # aiohttp only when a receiver starts: it is most of `audimeter run`'s import time.
        from aiohttp import web

        app = web.Application(client_max_size=self._config.max_body)
        app.router.add_post(ROUTE, self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self._config.host, self._config.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise WebhookError(
                f"webhook: cannot listen on {self._config.listen}: {bind_failure(exc)}"
            ) from None
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        if not _is_loopback(self._config.host):
            log.warning(
                "webhook: listening on %s, not loopback: Icecast's credentials travel in clear "
                "text, keep this address reachable by Icecast only",
                self._config.host,
            )
        log.info("webhook: receiving Icecast URL authentication on port %d", self._port)

    async def _close(self) -> None:
        runner, self._runner = self._runner, None
        self._port = None
        if runner is not None:
            await runner.cleanup()

    # -- requests ---------------------------------------------------------------------------------

    def _authorized(self, header: str | None) -> bool:
        if header is None:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._credentials)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import hdrs, web

        if not self._authorized(request.headers.get(hdrs.AUTHORIZATION)):
            self.refused += 1
            return web.Response(
                status=401,
                text="authentication required\n",
                headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="audimeter"'},
            )
        source = request.match_info["source"]
        if source not in self._sources:
            self.refused += 1
            return web.Response(status=404, text="no such source\n")
        body = await request.read()  # more than max_body: 413
        fields = decode_form(body)
        if fields.get("action") == SOURCE_AUTH_ACTION:
            log.warning(
                "webhook %s: Icecast asks to authenticate a source client (stream_auth); "
                "audimeter never approves sources, remove that option from the mount",
                source,
            )
            self.refused += 1
            return web.Response(status=403, text="audimeter does not authenticate sources\n")
        self.received += 1
        await self._record(source, fields)
        return web.Response(text="ok\n", headers=ACCEPT_HEADERS)

    async def _record(self, source: str, fields: Mapping[str, str]) -> None:
        """Record the form's event in the inbox; failures are logged, never raised."""
        action = fields.get("action", "")
        try:
            observation = parse_form(fields, source, int(self._clock()))
        except FormError as exc:
            self.failed += 1
            log.error(
                "webhook %s: cannot use a form from Icecast (%s); listener let in", source, exc
            )
            return
        if observation is None:
            log.debug("webhook %s: %r acknowledged", source, action)
            return
        try:
            await self._commit(encode(observation))
        except Exception as exc:
            self.failed += 1
            log.error(
                "webhook %s: %s of client %s on %s not recorded, listener let in: %s",
                source,
                action,
                observation.client_id,
                observation.mount,
                exc,
            )
            return
        self.recorded += 1
        try:
            self._notify()
        except Exception:
            log.exception("webhook %s: waking the daemon failed", source)

    async def _commit(self, payload: str) -> None:
        """Return once `payload` is on disk, with those that came while others were written."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append((payload, done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            payloads = [payload for payload, _ in batch]
            try:
                await loop.run_in_executor(self._writer, self._record_payload, *payloads)
            except Exception as exc:
                for _, done in batch:
                    if not done.done():  # not given up with its request
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
