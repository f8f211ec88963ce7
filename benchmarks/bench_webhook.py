"""How fast the URL-authentication receiver answers Icecast while the daemon is busy.

Target: p99 of the answer time at most 50 ms. Icecast admits a listener only once the receiver
has answered, so this time is added to every listener's start.

The real `audimeter run` (a child process) polls a fake Icecast 2.4 (its own process, from
bench_load.py) with one mount of 100,000 listeners every 10 s, delivers to a recording Matomo
(its own process) and receives Icecast URL authentication. This script plays Icecast's side of
URL authentication: `listener_add` and `listener_remove` forms as Icecast 2.4.4 sends them (see
tests/fixtures/icecast-2.4.4/url_auth_requests.log), at a steady rate from a few connections
with keep-alive, as Icecast's authentication threads do. Each answer time runs from the moment
the request was due, so a stalled receiver is not hidden by requests sent late. It measures
three phases: the cold start (until Matomo has the 100,000 session starts), steady polls, and
steady polls while `audimeter import` (another process) imports a generated access log
(bench_import.py's, 71% listener lines by default) into the same state file.

    .venv/bin/python benchmarks/bench_webhook.py [--rate 50] [--steady 30] [--import-lines N]
        [--import-seconds 90] [--src DIR]

`--src DIR` runs the daemon and the import from another source tree (e.g. an export of an older
commit's src/) to compare, on the same machine in the same sitting. Each phase also shows the
CPU seconds of the daemon and of the receiver's process (Linux /proc), and the load average.

Figures measured on the development machine, with what changed them: docs/development.md,
under "Benchmarks".
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bench_import import write_log
from bench_load import log_problems, servers, stop_daemon, write_config
from bench_matomo_sink import matomo_tally
from bench_poll import USER_AGENTS, random_ip

LISTENERS = 100_000
MOUNT = "/m01"
TARGET_MS = 50.0
HOOK_USER, HOOK_PASSWORD = "icecast", "bench-hook-pw"
AUTH = "Basic " + base64.b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode()
HEADERS = {
    "Authorization": AUTH,
    "User-Agent": "Icecast 2.4.4",
    "Accept": "*/*",
    "Content-Type": "application/x-www-form-urlencoded",
}
COLD_START_CAP = 120.0


def escape(text: str) -> str:
    """Icecast 2.4's form encoding: every byte but letters and digits as lower-case %xx."""
    return "".join(
        c if c.isascii() and c.isalnum() else "".join(f"%{b:02x}" for b in c.encode()) for c in text
    )


class Forms:
    """Joins and leaves of listeners, as Icecast 2.4.4 posts them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.next_id = 10_000_000  # far from the fake Icecast's listener ids
        self.joined: deque[tuple[str, str, str, float]] = deque()

    def next(self) -> str:
        rng = self.rng
        if self.joined and (len(self.joined) > 40 or rng.random() < 0.5):
            client, ip, agent, since = self.joined.popleft()
            seconds = max(0, int(time.monotonic() - since))
            return (
                f"action=listener_remove&server=127%2e0%2e0%2e1&port=8000&client={client}"
                f"&mount={escape(MOUNT)}&user=&pass=&duration={seconds}&ip={escape(ip)}"
                f"&agent={escape(agent)}"
            )
        self.next_id += 1
        client = str(self.next_id)
        ip = random_ip(rng)
        agent = rng.choices([ua for _, ua in USER_AGENTS], [w for w, _ in USER_AGENTS])[0]
        self.joined.append((client, ip, agent, time.monotonic()))
        query = escape("?utm_source=web") if rng.random() < 0.2 else ""
        return (
            f"action=listener_add&server=127%2e0%2e0%2e1&port=8000&client={client}"
            f"&mount={escape(MOUNT)}{query}&user=&pass=&ip={escape(ip)}&agent={escape(agent)}"
            f"&ClientHeader.referer={escape('https://radio.example.org/')}"
            f"&ClientHeader.user-agent={escape(agent)}"
        )


@dataclass(slots=True)
class Answers:
    """Answer times in ms per phase, and what failed."""

    phase: str = "start"
    times: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, ms: float, ok: bool) -> None:
        with self.lock:
            self.times.setdefault(self.phase, []).append(ms)
            if not ok:
                self.failures[self.phase] = self.failures.get(self.phase, 0) + 1


def play_icecast(
    url: str, rate: float, index: int, workers: int, answers: Answers, stop: threading.Event
) -> None:
    """One of Icecast's authentication threads: every `workers / rate` s, one form."""
    forms = Forms(seed=index)
    interval = workers / rate
    due = time.monotonic() + index / rate
    with httpx.Client(timeout=10, trust_env=False) as client:
        while not stop.is_set():
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            body = forms.next()
            try:
                response = client.post(url, content=body, headers=HEADERS)
                ok = (
                    response.status_code == 200 and response.headers.get("icecast-auth-user") == "1"
                )
            except httpx.HTTPError:
                ok = False
            answers.add((time.monotonic() - due) * 1000, ok)
            due += interval


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def audimeter(*args: str) -> list[str]:
    return [sys.executable, "-m", "audimeter", *args]


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def cpu_seconds(pid: int | None) -> float:
    """User and system CPU seconds of a running process (0 if there is none)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # from the third field, the state, on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def receiver_pid(daemon: int) -> int | None:
    """The daemon's child, the receiver's process; None when it answers from a thread."""
    try:
        children = Path(f"/proc/{daemon}/task/{daemon}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


@dataclass(slots=True)
class Usage:
    """CPU seconds of the daemon and the receiver and the load average at phase boundaries."""

    daemon: int
    receiver: int | None = None
    marks: list[tuple[float, float, float]] = field(default_factory=list)

    def mark(self) -> None:
        self.receiver = self.receiver or receiver_pid(self.daemon)
        self.marks.append(
            (cpu_seconds(self.daemon), cpu_seconds(self.receiver), os.getloadavg()[0])
        )

    def phase(self, index: int) -> str:
        (daemon, receiver, load), (daemon_end, receiver_end, _) = self.marks[index : index + 2]
        where = (
            f"receiver {receiver_end - receiver:.1f} s in its own process"
            if self.receiver
            else "receiver in the daemon's process"
        )
        return f"    CPU: daemon {daemon_end - daemon:.1f} s, {where}; load {load:.1f} at its start"


def summary(name: str, times: list[float], failures: int, seconds: float) -> str:
    if len(times) < 2:
        return f"{name}: {len(times)} answers, too few to measure"
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    late = sum(1 for t in times if t > TARGET_MS)
    return (
        f"{name}: {len(times)} answers in {seconds:.0f} s, p50 {cuts[49]:.1f} ms, "
        f"p95 {cuts[94]:.1f} ms, p99 {cuts[98]:.1f} ms, max {max(times):.1f} ms; "
        f"{late} over {TARGET_MS:.0f} ms, {failures} failed"
    )


def p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100, method="inclusive")[98]


def measure(args: argparse.Namespace, directory: Path, icecast_port: int, matomo_port: int) -> None:
    matomo_url = f"http://127.0.0.1:{matomo_port}"
    hook_port = free_port()
    webhook = (
        f'\n[webhook]\nlisten = "127.0.0.1:{hook_port}"\nusername = "{HOOK_USER}"\n'
        f'password = "{HOOK_PASSWORD}"\n'
    )
    config = write_config(directory, icecast_port, matomo_port, webhook)
    config.chmod(0o600)
    logfile = directory / "access.log"
    started = time.monotonic()
    written, listener_lines = write_log(logfile, args.import_lines, args.listener_share)
    print(
        f"import log: {written} lines, {listener_lines / written:.0%} "
        f"listener lines, generated in {time.monotonic() - started:.0f} s"
    )
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    daemon_log = directory / "audimeter.log"
    with daemon_log.open("wb") as out:
        daemon = subprocess.Popen(
            audimeter("run", "--config", str(config)),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    answers = Answers()
    usage = Usage(daemon.pid)
    stop = threading.Event()
    workers = [
        threading.Thread(
            target=play_icecast,
            args=(f"http://127.0.0.1:{hook_port}/icecast/bench", args.rate, i, args.workers),
            kwargs={"answers": answers, "stop": stop},
        )
        for i in range(args.workers)
    ]
    spans: dict[str, float] = {}
    import_note = "not run"
    try:
        if not wait_for_port(hook_port, 30):
            print("FAIL: the receiver did not start; the daemon's log:")
            print(daemon_log.read_text(encoding="utf-8", errors="replace")[-3000:])
            return
        answers.phase = "cold start"
        usage.mark()
        phase_start = time.monotonic()
        for worker in workers:
            worker.start()
        while time.monotonic() - phase_start < COLD_START_CAP and daemon.poll() is None:
            time.sleep(1)
            if matomo_tally(matomo_url).requests >= LISTENERS:
                break
        cold = matomo_tally(matomo_url).requests
        print(f"cold start: {cold} requests delivered to Matomo (the {LISTENERS} starts first)")

        spans["cold start"] = time.monotonic() - phase_start
        usage.mark()
        answers.phase = "steady polls"
        phase_start = time.monotonic()
        time.sleep(args.steady)

        spans["steady polls"] = time.monotonic() - phase_start
        usage.mark()
        answers.phase = "polls + import"
        phase_start = time.monotonic()
        with (directory / "import.log").open("wb") as out:
            importer = subprocess.Popen(
                audimeter("import", "--config", str(config), "--source", "bench", str(logfile)),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            code = importer.wait(args.import_seconds)
            import_note = f"exit status {code} after {time.monotonic() - phase_start:.0f} s"
        except subprocess.TimeoutExpired:
            # Queueing comes first, then sending; an import stopped goes on where it stopped.
            importer.terminate()
            try:
                importer.wait(10)
            except subprocess.TimeoutExpired:
                importer.kill()
                importer.wait()
            import_note = f"still running after {args.import_seconds:g} s, stopped there"
        spans["polls + import"] = time.monotonic() - phase_start
        usage.mark()
        answers.phase = "end"
    finally:
        stop.set()
        for worker in workers:
            if worker.is_alive():
                worker.join(15)
        stopped = stop_daemon(daemon)

    problems = log_problems(daemon_log)
    print(f"load: {args.rate:g} forms/s (joins and leaves) over {args.workers} connections")
    print(f"import: {import_note}")
    print(f"daemon: {stopped}; {len(problems)} warning/error log lines")
    for line in problems[:5]:
        print(f"    {line}")
    everything: list[float] = []
    failed = 0
    for index, (name, seconds) in enumerate(spans.items()):
        times = answers.times.get(name, [])
        failures = answers.failures.get(name, 0)
        everything += times
        failed += failures
        print(summary(name, times, failures, seconds))
        print(usage.phase(index))
    if len(everything) < 2:
        print("FAIL: too few answers to measure")
        return
    print(summary("all phases", everything, failed, sum(spans.values())))
    for name in spans:
        times = answers.times.get(name, [])
        if len(times) >= 2:
            verdict = "PASS" if p99(times) <= TARGET_MS else "FAIL"
            print(f"{verdict}: {name}: p99 {p99(times):.1f} ms (target <= {TARGET_MS:.0f} ms)")
    worst = p99(everything)
    verdict = "PASS" if worst <= TARGET_MS and not failed else "FAIL"
    print(
        f"{verdict}: all phases: p99 {worst:.1f} ms (target <= {TARGET_MS:.0f} ms), {failed} failed"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=50.0, help="forms per second")
    parser.add_argument("--workers", type=int, default=4, help="Icecast's connections")
    parser.add_argument("--steady", type=float, default=30.0, help="seconds of polls alone")
    parser.add_argument("--import-lines", type=int, default=100_000, help="lines to import")
    parser.add_argument(
        "--import-seconds", type=float, default=90.0, help="measure the import this long at most"
    )
    parser.add_argument("--listener-share", type=float, default=0.71)
    parser.add_argument("--src", help="run audimeter from this source tree (its src/)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    with (
        servers(args.seed, 1, LISTENERS) as (icecast_port, matomo_port),
        tempfile.TemporaryDirectory(prefix="audimeter-webhook-") as tmp,
    ):
        measure(args, Path(tmp), icecast_port, matomo_port)


if __name__ == "__main__":
    main()
