"""Parse and sessionize one poll of a large mount.

Targets: one steady-state poll of a mount with 10,000 listeners in at most 50 ms, with 100,000 in
at most 500 ms, and the median poll of 100,000 in at most 200 ms (`parse_listclients` +
`Sessionizer.observe(MountPolled(...))`).

A sessionizer that saw the previous poll 10 s earlier gets the next one: the same listeners
with `Connected` 10 s higher, about 1% of them gone and about 1% new. The listener lists are
generated as Icecast 2.4 writes /admin/listclients; generating them is not timed. The first poll
(all listeners new, with the catch-up keep-alives of sessions up to 4 h old) is timed too, for
information.

Figures measured on the development machine, with what changed them: docs/development.md,
under "Benchmarks".

    .venv/bin/python benchmarks/bench_poll.py [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import html
import io
import os
import pstats
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

from audimeter.events import Event
from audimeter.observations import MountPolled
from audimeter.sessionizer import Sessionizer
from audimeter.sources.icecast import parse_listclients

SOURCE = "bench"
INSTANCE = "2026-11-26T12:44:04+0000"
MOUNT = "/live.mp3"
POLL_INTERVAL = 10
CHURN = 0.01
MAX_CONNECTED = 4 * 3600
T0 = 1_795_000_000

TARGETS_MS = {10_000: 50.0, 100_000: 500.0}
"""For the worst steady-state poll."""
MEDIAN_TARGETS_MS = {100_000: 200.0}
REPETITIONS = {10_000: 25, 100_000: 8}

# (weight, user agent): browsers, mobile apps, players, smart speakers and a few tools, in
# roughly the proportions a public radio stream sees.
USER_AGENTS: tuple[tuple[int, str], ...] = (
    (
        90,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
    ),
    (
        40,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/119.0.0.0 Safari/537.36",
    ),
    (
        45,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    ),
    (35, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"),
    (12, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0"),
    (
        30,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.1 Safari/605.1.15",
    ),
    (
        25,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/120.0.0.0 Safari/537.36",
    ),
    (10, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:120.0) Gecko/20100101 Firefox/120.0"),
    (
        8,
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
    ),
    (5, "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
    (
        60,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
    ),
    (
        20,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    ),
    (
        10,
        "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Mobile/15E148 Safari/604.1",
    ),
    (
        55,
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.43 Mobile Safari/537.36",
    ),
    (
        15,
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S911B) AppleWebKit/537.36 (KHTML, like "
        "Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    ),
    (50, "AppleCoreMedia/1.0.0.21B101 (iPhone; U; CPU OS 17_1_2 like Mac OS X; de_de)"),
    (20, "AppleCoreMedia/1.0.0.20G81 (iPhone; U; CPU OS 16_6_1 like Mac OS X; en_us)"),
    (8, "AppleCoreMedia/1.0.0.23B81 (Macintosh; U; Intel Mac OS X 14_1_2; en_gb)"),
    (6, "AppleCoreMedia/1.0.0.21J354 (Apple TV; U; CPU OS 17_1 like Mac OS X; en_us)"),
    (30, "ExoPlayerLib/2.18.1 (Linux; Android 13) RadioApp/4.2"),
    (15, "ExoPlayerLib/2.19.1 (Linux; Android 14) radio.de/5.11.2"),
    (25, "stagefright/1.2 (Linux;Android 12)"),
    (12, "stagefright/1.2 (Linux;Android 13)"),
    (10, "Dalvik/2.1.0 (Linux; U; Android 11; Redmi Note 8 Pro Build/RP1A.200720.011)"),
    (8, "okhttp/4.11.0"),
    (25, "TuneIn Radio/31.4.0; iPhone15,2; iOS/17.1.2"),
    (12, "TuneIn Radio Pro/29.8.1 (Linux;Android 12) ExoPlayerLib/2.18.1"),
    (9, "myTuner/9.1.8 (iPhone; iOS 17.1; Scale/3.00)"),
    (7, "Radioline/2.6.3 (iPhone; iOS 16.6; Scale/3.00)"),
    (6, "Radio Garden/2.5.1 (com.jonathanpuckey.radiogarden; build:1; iOS 17.1.1) Alamofire/5.8.0"),
    (15, "VLC/3.0.20 LibVLC/3.0.20"),
    (8, "VLC/3.0.18 LibVLC/3.0.18"),
    (4, "VLC/3.0.16 LibVLC/3.0.16"),
    (
        10,
        "iTunes/12.13 (Windows; Microsoft Windows 10 x64 Professional Edition (Build 19045); x64) "
        "AppleWebKit/7617.1017.1001.1",
    ),
    (5, "Music/1.4.1 (Macintosh; OS X 14.1.2) AppleWebKit/617.1.17.11.12"),
    (6, "WinampMPEG/5.66, Ultravox/2.1"),
    (3, "WinampMPEG/2.9"),
    (5, "foobar2000/2.0"),
    (4, "NSPlayer/12.00.19041.3636 WMFSDK/12.00.19041.3636"),
    (4, "Windows-Media-Player/12.0.19041.3636"),
    (5, "Lavf/58.76.100"),
    (3, "Lavf/60.3.100"),
    (3, "mpv 0.36.0"),
    (2, "MPlayer 1.5-12"),
    (2, "BASS/2.4"),
    (2, "Streamripper/1.x"),
    (20, "Sonos/79.1-52294 (ZPS27)"),
    (18, "AlexaMediaPlayer/2.1.6131.0 (Linux;Android 7.1.2) ExoPlayerLib/2.11.8"),
    (
        10,
        "Mozilla/5.0 (X11; Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/114.0.5735.336 Safari/537.36 CrKey/1.56.500000 DeviceType/AudioReceiver",
    ),
    (6, "Roku/DVP-12.5 (12.5.0.4178-88)"),
    (4, "Bose/28.0.6.46330 (Linux; SoundTouch)"),
    (3, "curl/7.88.1"),
    (2, "Wget/1.21.3"),
)


def random_ip(rng: random.Random) -> str:
    """A public-looking address: mostly IPv4, some IPv6."""
    if rng.random() < 0.06:
        prefix = rng.choice(("2a02", "2a01", "2001", "2003", "2600", "2605"))
        groups = [f"{rng.getrandbits(16):x}" for _ in range(7)]
        return prefix + ":" + ":".join(groups)
    first = rng.choice((2, 5, 31, 37, 46, 62, 77, 78, 80, 81, 84, 85, 87, 88, 89, 91, 93, 94))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


@dataclass(slots=True)
class Crowd:
    """The listeners of one mount over a series of polls; renders /admin/listclients."""

    rng: random.Random
    mount: str = MOUNT
    next_id: int = 1
    ips: set[str] = field(default_factory=set)
    # client id -> (connect time, "<listener>…<Connected>", "</Connected><ID>…</listener>")
    listeners: dict[int, tuple[int, str, str]] = field(default_factory=dict)

    def _agents(self, count: int) -> list[str]:
        weights = [w for w, _ in USER_AGENTS]
        agents = [ua for _, ua in USER_AGENTS]
        return self.rng.choices(agents, weights=weights, k=count)

    def join(self, count: int, earliest: int, latest: int) -> None:
        """`count` new listeners connected between `earliest` and `latest`."""
        for agent in self._agents(count):
            ip = random_ip(self.rng)
            while ip in self.ips:
                ip = random_ip(self.rng)
            self.ips.add(ip)
            client_id = self.next_id
            self.next_id += 1
            head = (
                f"<listener><IP>{ip}</IP><UserAgent>{html.escape(agent, quote=False)}</UserAgent>"
                "<Connected>"
            )
            tail = f"</Connected><ID>{client_id}</ID></listener>"
            self.listeners[client_id] = (self.rng.randint(earliest, latest), head, tail)

    def leave(self, count: int) -> None:
        for client_id in self.rng.sample(sorted(self.listeners), count):
            _, head, _ = self.listeners.pop(client_id)
            self.ips.discard(head[len("<listener><IP>") : head.index("</IP>")])

    def listclients(self, at: int) -> bytes:
        parts = [
            '<?xml version="1.0"?>\n<icestats>',
            f'<source mount="{self.mount}"><Listeners>{len(self.listeners)}</Listeners>',
        ]
        for connected_at, head, tail in self.listeners.values():
            parts.append(f"{head}{at - connected_at}{tail}")
        parts.append("</source></icestats>\n")
        return "".join(parts).encode()


@dataclass(frozen=True, slots=True)
class PollTiming:
    parse: float
    observe: float
    events: list[Event]
    cpu: float
    """The process's CPU time for the poll: on a busy machine, steadier than the wall time."""

    @property
    def total(self) -> float:
        return self.parse + self.observe


def timed_poll(sessionizer: Sessionizer, body: bytes, at: int) -> PollTiming:
    gc.collect()  # start every poll from the same heap, without the generator's garbage
    cpu = time.process_time()
    started = time.perf_counter()
    mount, listeners = parse_listclients(body)
    parsed = time.perf_counter()
    events = sessionizer.observe(MountPolled(SOURCE, at, INSTANCE, mount, listeners))
    done = time.perf_counter()
    return PollTiming(parsed - started, done - parsed, events, time.process_time() - cpu)


def new_sessionizer() -> Sessionizer:
    return Sessionizer(keepalive_interval=120, outage_grace=120, catchup_gap=1799)


def next_poll(crowd: Crowd, size: int, at: int) -> bytes:
    """The listing `POLL_INTERVAL` s after the previous one: ~1% gone, ~1% new."""
    churn = max(1, round(size * CHURN))
    crowd.leave(churn)
    crowd.join(churn, at - POLL_INTERVAL + 1, at)
    return crowd.listclients(at)


def describe(events: list[Event]) -> str:
    kinds = Counter(type(e).__name__ for e in events)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "no events"


def load_average() -> str:
    return " ".join(f"{figure:.1f}" for figure in os.getloadavg())


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def bench(size: int, repetitions: int, rng: random.Random) -> bool:
    crowd = Crowd(rng)
    crowd.join(size, T0 - MAX_CONNECTED, T0)
    body = crowd.listclients(T0)
    print(f"{size} listeners: listclients body {len(body) / 1e6:.2f} MB")

    sessionizer = new_sessionizer()
    first = timed_poll(sessionizer, body, T0)
    print(
        f"  first poll (cold start, for information): {ms(first.total)} "
        f"(parse {ms(first.parse)}, observe {ms(first.observe)}; {describe(first.events)})"
    )

    at = T0
    totals: list[float] = []
    parses: list[float] = []
    observes: list[float] = []
    cpus: list[float] = []
    event_counts: list[int] = []
    for _ in range(repetitions):
        at += POLL_INTERVAL
        body = next_poll(crowd, size, at)
        timing = timed_poll(sessionizer, body, at)
        totals.append(timing.total)
        parses.append(timing.parse)
        observes.append(timing.observe)
        cpus.append(timing.cpu)
        event_counts.append(len(timing.events))
    target = TARGETS_MS[size] / 1000
    median = statistics.median(totals)
    worst = max(totals)
    print(
        f"  steady-state poll over {repetitions} polls: median {ms(median)}, worst {ms(worst)}, "
        f"best {ms(min(totals))}"
    )
    print(
        f"    parse median {ms(statistics.median(parses))}, observe median "
        f"{ms(statistics.median(observes))}, events per poll median "
        f"{statistics.median(event_counts):.0f} (last: {describe(timing.events)})"
    )
    print(f"    CPU time median {ms(statistics.median(cpus))}, load average {load_average()}")
    ok = worst <= target
    print(
        f"{'PASS' if ok else 'FAIL'}: {size} listeners, worst steady-state poll {ms(worst)} "
        f"(target <= {ms(target)})"
    )
    if size in MEDIAN_TARGETS_MS:
        median_target = MEDIAN_TARGETS_MS[size] / 1000
        median_ok = median <= median_target
        print(
            f"{'PASS' if median_ok else 'FAIL'}: {size} listeners, median steady-state poll "
            f"{ms(median)} (target <= {ms(median_target)})"
        )
        ok = ok and median_ok
    return ok


def profile(size: int, rng: random.Random) -> None:
    """cProfile of one steady-state poll, for finding what the time goes to."""
    crowd = Crowd(rng)
    crowd.join(size, T0 - MAX_CONNECTED, T0)
    sessionizer = new_sessionizer()
    timed_poll(sessionizer, crowd.listclients(T0), T0)
    at = T0 + POLL_INTERVAL
    body = next_poll(crowd, size, at)
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    _, listeners = parse_listclients(body)
    sessionizer.observe(MountPolled(SOURCE, at, INSTANCE, MOUNT, listeners))
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    print(f"cProfile of one steady-state poll of {size} listeners:")
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--profile", action="store_true", help="also profile a 100k poll")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    for size, repetitions in REPETITIONS.items():
        bench(size, repetitions, rng)
    if args.profile:
        profile(100_000, rng)
    print(f"bench_poll took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
