"""Drive a real Icecast 2.4 server on loopback for integration tests.

Provides :class:`IcecastServer` (a throw-away ``icecast2`` process with its own
config and logs), :class:`SourceClient` (streams synthetic MP3 frames to a
mount), :class:`Listener` (a real HTTP listener bound to a chosen 127.x.y.z
address) and small helpers that read Icecast's admin XML interface.

Every network address used here is inside 127.0.0.0/8 and every wait is
bounded in time.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from xml.sax.saxutils import escape

__all__ = [
    "IcecastServer",
    "Listener",
    "SourceClient",
    "admin_xml",
    "free_port",
    "http_get",
    "listclients",
    "listmounts",
    "server_stats",
]

LOOPBACK = "127.0.0.1"
ICECAST_BINARY = "icecast2"
ICECAST_SHARE = Path("/usr/share/icecast2")
# Account and group created by the Debian package; used when running as root.
ICECAST_USER = "icecast2"
ICECAST_GROUP = "icecast"
DEFAULT_ADMIN_PASSWORD = "hackme"
DEFAULT_SOURCE_PASSWORD = "srcpass"

# Icecast's server_start has one-second resolution: keep restarts further apart.
_MIN_START_INTERVAL = 1.1
_START_ATTEMPTS = 3
"""Debian's icecast2 2.4.4 now and then dies of SIGSEGV/SIGABRT while starting on a loaded
machine, before it serves anything: such a start is tried again, any other failure is not."""
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS}


class _CrashedAtStart(RuntimeError):
    """icecast2 was killed by a signal of its own making before it answered."""


# Never route loopback test traffic through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _tail(path: Path, offset: int = 0, max_lines: int = 40) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-max_lines:])


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_http_head(sock: socket.socket, deadline: float) -> tuple[str, dict[str, str], bytes]:
    """Read a response head; return (status line, lower-cased headers, extra body bytes)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for HTTP response headers")
        sock.settimeout(remaining)
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"connection closed before end of headers: {buf[:200]!r}")
        buf += chunk
        if len(buf) > 65536:
            raise ConnectionError("HTTP response headers too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return lines[0], headers, rest


def _status_code(status_line: str) -> int:
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(("HTTP/", "ICE/")) or not parts[1].isdigit():
        raise ConnectionError(f"malformed HTTP status line: {status_line!r}")
    return int(parts[1])


def _icecast_ids() -> tuple[int, int, list[int]]:
    """uid, gid and all group ids of the Debian ``icecast2`` account."""
    try:
        uid = pwd.getpwnam(ICECAST_USER).pw_uid
        gid = grp.getgrnam(ICECAST_GROUP).gr_gid
    except KeyError as exc:
        raise RuntimeError(
            f"running as root needs user {ICECAST_USER!r} and group {ICECAST_GROUP!r} "
            "(created by the Debian icecast2 package)"
        ) from exc
    return uid, gid, os.getgrouplist(ICECAST_USER, gid)


def _reachable(path: Path, uid: int, gids: Sequence[int]) -> bool:
    """Whether every directory from ``/`` down to ``path`` is searchable for uid/gids."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _retire_logdir(real: Path, link: Path) -> None:
    """Move logs kept outside the work dir back in place of their symlink."""
    try:
        if link.is_symlink() and link.resolve() == real.resolve():
            link.unlink()
            shutil.move(real, link)
    except OSError:
        pass
    shutil.rmtree(real, ignore_errors=True)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


class IcecastServer:
    """A private ``icecast2`` process listening on 127.0.0.1:``port``."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        port: int | None = None,
        admin_user: str = "admin",
        admin_password: str = DEFAULT_ADMIN_PASSWORD,
        source_password: str = DEFAULT_SOURCE_PASSWORD,
        extra_mounts: Sequence[str] = (),
        *,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.port = port if port is not None else free_port()
        self.admin_user = admin_user
        self.admin_password = admin_password
        self.source_password = source_password
        self.extra_mounts = list(extra_mounts)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.config_path = self.workdir / "icecast.xml"
        self.output_path = self.workdir / "icecast.out"
        self._logdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], IcecastServer] | None = None
        self._last_ready: float | None = None

    # -- properties ---------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def admin_auth(self) -> tuple[str, str]:
        return (self.admin_user, self.admin_password)

    @property
    def logdir(self) -> Path:
        return self._logdir if self._logdir is not None else self.workdir / "log"

    @property
    def access_log_path(self) -> Path:
        return self.logdir / "access.log"

    @property
    def error_log_path(self) -> Path:
        return self.logdir / "error.log"

    @property
    def pidfile_path(self) -> Path:
        return self.logdir / "icecast.pid"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Write the config, launch icecast2 and wait until it serves HTTP."""
        if self._proc is not None:
            raise RuntimeError("Icecast is already running")
        binary = shutil.which(ICECAST_BINARY)
        if binary is None:
            raise RuntimeError(f"{ICECAST_BINARY} binary not found on PATH")
        self._prepare_dirs()
        self.config_path.write_text(self._config_xml(), encoding="utf-8")
        if self._last_ready is not None:
            wait = self._last_ready + _MIN_START_INTERVAL - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                self._launch(binary)
            except _CrashedAtStart:
                if attempt == _START_ATTEMPTS:
                    raise
            else:
                break
        self._last_ready = time.monotonic()

    def stop(self) -> None:
        """SIGTERM the server and wait for it; SIGKILL after ``stop_timeout``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._cleanup_process()

    def restart(self) -> None:
        """Stop and start again on the same port (with a fresh server_start)."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The server is thrown away: SIGKILL, since a SIGTERM'd icecast2 takes 1.5 s to wind
        # down its threads. Tests that need a graceful stop call stop() or restart() themselves.
        self._kill()

    # -- internals ----------------------------------------------------------

    def _kill(self) -> None:
        if self._proc is not None:
            _terminate(self._proc)
        self._cleanup_process()

    def _cleanup_process(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._proc = None
        if self._output is not None:
            self._output.close()
            self._output = None

    def _launch(self, binary: str) -> None:
        error_offset = _file_size(self.error_log_path)
        output_offset = _file_size(self.output_path)
        self._output = self.output_path.open("ab")
        proc = subprocess.Popen(
            [binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        self._proc = proc
        self._finalizer = weakref.finalize(self, _terminate, proc)
        try:
            self._wait_ready(proc)
        except BaseException as exc:
            self._kill()
            if not isinstance(exc, Exception):
                raise
            details = "\n".join(
                part
                for part in (
                    _tail(self.error_log_path, error_offset),
                    _tail(self.output_path, output_offset),
                )
                if part
            )
            kind = _CrashedAtStart if isinstance(exc, _CrashedAtStart) else RuntimeError
            raise kind(
                f"Icecast failed to start on port {self.port}: {exc}\n"
                f"--- icecast log tail ---\n{details or '(empty)'}"
            ) from exc

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                crashed = code < 0 and -code in _CRASH_SIGNALS
                raise (_CrashedAtStart if crashed else RuntimeError)(
                    f"icecast2 exited with status {code}"
                )
            try:
                http_get(self, "/status-json.xsl", timeout=1.0)
            except (OSError, urllib.error.URLError) as exc:
                last_error = exc
                time.sleep(0.05)
            else:
                return
        raise TimeoutError(
            f"no answer on /status-json.xsl within {self.start_timeout} s "
            f"(last error: {last_error})"
        )

    def _prepare_dirs(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._logdir is not None:
            return
        logdir = self.workdir / "log"
        if os.geteuid() != 0:
            logdir.mkdir(exist_ok=True)
            self._logdir = logdir
            return
        # Icecast drops privileges before it opens its logs, so the icecast2
        # account must be able to reach and write the log directory.
        uid, gid, gids = _icecast_ids()
        self.workdir.chmod(stat.S_IMODE(self.workdir.stat().st_mode) | 0o011)
        if _reachable(self.workdir, uid, gids):
            logdir.mkdir(exist_ok=True)
            os.chown(logdir, uid, gid)
            logdir.chmod(0o775)
            self._logdir = logdir
            return
        # A parent (e.g. pytest's 0700 base temp dir) blocks the icecast2 user:
        # keep the real logs in a private dir under the system temp dir and
        # expose them inside the work dir through a symlink.
        real = Path(tempfile.mkdtemp(prefix="icecast-harness-log-"))
        os.chown(real, uid, gid)
        real.chmod(0o775)
        if not _reachable(real, uid, gids):
            shutil.rmtree(real, ignore_errors=True)
            raise RuntimeError(f"no log directory reachable for user {ICECAST_USER!r}")
        if not logdir.exists() and not logdir.is_symlink():
            logdir.symlink_to(real, target_is_directory=True)
        weakref.finalize(self, _retire_logdir, real, logdir)
        self._logdir = real

    def _config_xml(self) -> str:
        def e(value: str | Path | int) -> str:
            return escape(str(value))

        if os.geteuid() == 0:
            security = (
                "<security><chroot>0</chroot><changeowner>"
                f"<user>{e(ICECAST_USER)}</user><group>{e(ICECAST_GROUP)}</group>"
                "</changeowner></security>"
            )
        else:
            security = "<security><chroot>0</chroot></security>"
        mounts = "\n  ".join(self.extra_mounts)
        return f"""<icecast>
  <location>loopback test</location>
  <admin>test@localhost</admin>
  <hostname>{LOOPBACK}</hostname>
  <limits>
    <clients>200</clients>
    <sources>10</sources>
    <queue-size>524288</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>5</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect>
    <burst-size>65535</burst-size>
  </limits>
  <authentication>
    <source-password>{e(self.source_password)}</source-password>
    <relay-password>{e(self.source_password)}</relay-password>
    <admin-user>{e(self.admin_user)}</admin-user>
    <admin-password>{e(self.admin_password)}</admin-password>
  </authentication>
  <listen-socket>
    <port>{self.port}</port>
    <bind-address>{LOOPBACK}</bind-address>
  </listen-socket>
  {mounts}
  <fileserve>1</fileserve>
  <paths>
    <basedir>{e(ICECAST_SHARE)}</basedir>
    <logdir>{e(self.logdir)}</logdir>
    <pidfile>{e(self.pidfile_path)}</pidfile>
    <webroot>{e(ICECAST_SHARE / "web")}</webroot>
    <adminroot>{e(ICECAST_SHARE / "admin")}</adminroot>
  </paths>
  <logging>
    <accesslog>access.log</accesslog>
    <errorlog>error.log</errorlog>
    <loglevel>3</loglevel>
    <logsize>100000</logsize>
  </logging>
  {security}
</icecast>
"""


# -- admin / HTTP helpers ----------------------------------------------------


def http_get(
    server: IcecastServer,
    path: str,
    *,
    params: dict[str, str] | None = None,
    admin: bool = False,
    timeout: float = 5.0,
) -> bytes:
    """GET ``path`` from the server (optionally with admin Basic auth)."""
    url = server.url + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url)  # noqa: S310 - always http://127.0.0.1
    if admin:
        request.add_header("Authorization", _basic_auth(*server.admin_auth))
    with _OPENER.open(request, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def admin_xml(server: IcecastServer, path: str, params: dict[str, str] | None = None) -> ET.Element:
    """Fetch an ``/admin/...`` page (XML flavour) and parse it."""
    # Test-only code talking to our own Icecast: the XML is trusted.
    return ET.fromstring(http_get(server, path, params=params, admin=True))  # noqa: S314


def listmounts(server: IcecastServer) -> list[str]:
    """Mount points that currently have a source."""
    root = admin_xml(server, "/admin/listmounts")
    return [src.get("mount", "") for src in root.iter("source")]


def listclients(server: IcecastServer, mount: str) -> list[dict[str, str]]:
    """Listeners of ``mount`` as dicts of their fields (IP, UserAgent, Connected, ID, ...)."""
    root = admin_xml(server, "/admin/listclients", {"mount": mount})
    clients: list[dict[str, str]] = []
    for node in root.iter("listener"):
        fields = {child.tag: (child.text or "") for child in node}
        if "ID" not in fields and node.get("id") is not None:
            fields["ID"] = node.get("id", "")
        clients.append(fields)
    return clients


def server_stats(server: IcecastServer) -> dict[str, str]:
    """Global (server-level) values from ``/admin/stats``, e.g. server_start_iso8601."""
    root = admin_xml(server, "/admin/stats")
    return {child.tag: (child.text or "") for child in root if child.tag != "source"}


# -- source client -------------------------------------------------------------

# MPEG-1 Layer III, no CRC, 128 kbit/s, 44.1 kHz, no padding, joint stereo.
_MP3_HEADER = bytes((0xFF, 0xFB, 0x90, 0x44))
_MP3_FRAME_BYTES = 144 * 128_000 // 44_100  # 417
_MP3_FRAME = _MP3_HEADER + bytes(_MP3_FRAME_BYTES - len(_MP3_HEADER))
_MP3_FRAME_SECONDS = 1152 / 44_100


class SourceClient:
    """Streams silent-looking MP3 frames to ``mount`` at roughly real-time rate."""

    def __init__(
        self,
        server: IcecastServer,
        mount: str = "/live.mp3",
        *,
        name: str | None = None,
        password: str | None = None,
        content_type: str = "audio/mpeg",
        timeout: float = 5.0,
        preroll: float = 0.5,
    ) -> None:
        if not mount.startswith("/"):
            raise ValueError("mount must start with '/'")
        self.server = server
        self.mount = mount
        self.name = name
        self.password = password if password is not None else server.source_password
        self.content_type = content_type
        self.timeout = timeout
        self.preroll = preroll
        self.method: str | None = None
        self.error: BaseException | None = None
        self.bytes_sent = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def streaming(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Connect, authenticate and wait until the mount is listed by Icecast."""
        if self._sock is not None:
            raise RuntimeError("source already started")
        deadline = time.monotonic() + self.timeout
        failures: list[str] = []
        for method in ("PUT", "SOURCE"):
            try:
                sock = self._open(method, deadline)
            except (OSError, ConnectionError) as exc:
                failures.append(f"{method}: {exc}")
                continue
            self.method = method
            self._sock = sock
            break
        else:
            raise RuntimeError(f"source connection to {self.mount} refused: {'; '.join(failures)}")
        self._stop.clear()
        self.error = None
        self._thread = threading.Thread(
            target=self._pump, name=f"icecast-source{self.mount}", daemon=True
        )
        self._thread.start()
        while self.mount not in listmounts(self.server):
            if not self.streaming:
                self.stop()
                raise RuntimeError(f"source for {self.mount} stopped: {self.error}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"mount {self.mount} did not appear in /admin/listmounts")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop streaming and close the connection (Icecast then drops the mount)."""
        self._stop.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=self.timeout)
            self._thread = None
        if sock is not None:
            sock.close()

    def set_title(self, song: str = "", *, artist: str = "", title: str = "") -> None:
        """What Icecast shows as on air: `song` alone, or `artist` and `title` apart (the
        admin metadata update a source client's playout software makes)."""
        params = {"mount": self.mount, "mode": "updinfo", "charset": "UTF-8"}
        if song:
            params["song"] = song
        if artist:
            params["artist"] = artist
        if title:
            params["title"] = title
        http_get(self.server, "/admin/metadata", params=params, admin=True)

    def reconnect(self) -> None:
        """Close any existing connection and start again (e.g. after a server restart)."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _open(self, method: str, deadline: float) -> socket.socket:
        remaining = max(0.1, deadline - time.monotonic())
        sock = socket.create_connection((LOOPBACK, self.server.port), timeout=remaining)
        try:
            headers = [
                f"{method} {self.mount} HTTP/1.{'1' if method == 'PUT' else '0'}",
                f"Host: {LOOPBACK}:{self.server.port}",
                f"Authorization: {_basic_auth('source', self.password)}",
                f"Content-Type: {self.content_type}",
                "User-Agent: audimeter-test-source/1.0",
                "Ice-Public: 0",
                "Ice-Bitrate: 128",
                "Ice-Audio-Info: bitrate=128;samplerate=44100;channels=2",
            ]
            if self.name is not None:
                headers.append(f"Ice-Name: {self.name}")
            sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode("utf-8"))
            status_line, _, _ = _read_http_head(sock, deadline)
            code = _status_code(status_line)
            if not 200 <= code < 300:
                raise ConnectionError(f"server answered {status_line!r}")
            sock.settimeout(self.timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    def _pump(self) -> None:
        sock = self._sock
        if sock is None:
            return
        started = time.monotonic()
        frames_sent = 0
        try:
            while not self._stop.is_set():
                due = int((time.monotonic() - started + self.preroll) / _MP3_FRAME_SECONDS)
                if due > frames_sent:
                    sock.sendall(_MP3_FRAME * (due - frames_sent))
                    self.bytes_sent += (due - frames_sent) * len(_MP3_FRAME)
                    frames_sent = due
                self._stop.wait(0.05)
        except OSError as exc:
            if not self._stop.is_set():
                self.error = exc


# -- listener --------------------------------------------------------------------


class Listener:
    """An HTTP/1.0 listener on ``mount``, connecting from local address ``bind``."""

    def __init__(
        self,
        server: IcecastServer,
        mount: str = "/live.mp3",
        *,
        bind: str = LOOPBACK,
        user_agent: str = "audimeter-test-listener/1.0",
        referer: str | None = None,
        query: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        if not bind.startswith("127."):
            raise ValueError("listeners must bind to a 127.0.0.0/8 address")
        if not mount.startswith("/"):
            raise ValueError("mount must start with '/'")
        self.server = server
        self.mount = mount
        self.bind = bind
        self.user_agent = user_agent
        self.referer = referer
        self.query = query
        self.timeout = timeout
        self.status_line = ""
        self.headers: dict[str, str] = {}
        self.bytes_received = 0
        self.local_port: int | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        return f"{self.mount}?{self.query}" if self.query else self.mount

    @property
    def reading(self) -> bool:
        """Whether the drain thread is still receiving (False once the server hung up)."""
        return self._thread is not None and self._thread.is_alive()

    def connect(self) -> None:
        """Send the GET, require a 200 and start draining; returns after the headers."""
        if self._sock is not None:
            raise RuntimeError("listener already connected")
        deadline = time.monotonic() + self.timeout
        sock = socket.create_connection(
            (LOOPBACK, self.server.port), timeout=self.timeout, source_address=(self.bind, 0)
        )
        try:
            self.local_port = sock.getsockname()[1]
            lines = [
                f"GET {self.path} HTTP/1.0",
                f"Host: {LOOPBACK}:{self.server.port}",
                f"User-Agent: {self.user_agent}",
                "Accept: */*",
            ]
            if self.referer is not None:
                lines.append(f"Referer: {self.referer}")
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
            status_line, headers, rest = _read_http_head(sock, deadline)
            if _status_code(status_line) != 200:
                raise ConnectionError(f"GET {self.path} answered {status_line!r}")
        except BaseException:
            sock.close()
            raise
        self.status_line = status_line
        self.headers = headers
        self.bytes_received = len(rest)
        self._sock = sock
        self._stop.clear()
        sock.settimeout(0.2)
        self._thread = threading.Thread(
            target=self._drain, args=(sock,), name=f"icecast-listener-{self.bind}", daemon=True
        )
        self._thread.start()

    def wait_for_bytes(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` body bytes arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.bytes_received >= count:
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """Hang up and stop the drain thread."""
        self._stop.set()
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=self.timeout)
            self._thread = None
        if sock is not None:
            sock.close()

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _drain(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self.bytes_received += len(chunk)
