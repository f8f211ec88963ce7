"""Case 2: Matomo answering errors, hanging past the timeout, answering slowly, refusing some."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.audimeter import wait_for
from tests.support.faults import (
    MATOMO_BACKLOG,
    PLAYERS,
    Audience,
    Daemon,
    check_delivery,
    dead_letters,
    state_rows,
    write_config,
)
from tests.support.matomo import RecordingMatomo
from tests.support.shoutcast import Dnas2Emulator

from .conftest import Figures

BATCH = 5


@contextmanager
def running(
    tmp_path: Path, matomo: RecordingMatomo, matomo_timeout: float = 5.0
) -> Iterator[tuple[Audience, Daemon, Path]]:
    with Dnas2Emulator(streams={1: "/stream"}) as dnas:
        config = write_config(
            tmp_path,
            source_url=dnas.url,
            matomo_url=matomo.url,
            batch_size=BATCH,
            matomo_timeout=matomo_timeout,
        )
        with Daemon(config) as daemon:
            yield Audience(dnas), daemon, tmp_path / "state" / "audimeter.db"


def outbox(db: Path) -> int:
    rows = state_rows(
        db,
        MATOMO_BACKLOG,
    )
    return int(str(rows[0][0])) if rows else -1


def drained(db: Path, matomo: RecordingMatomo, ends: int, timeout: float = 30) -> None:
    wait_for(
        lambda: (
            outbox(db) == 0 and sum(r.params.get("e_a") == "end" for r in matomo.requests) >= ends
        ),
        timeout,
        f"{ends} ends delivered and an empty outbox",
    )


def test_http_500_and_503_for_a_while(tmp_path: Path, figures: Figures) -> None:
    """Matomo answers 500, then 503, while listeners join and leave; then it recovers.

    Nothing of a failed batch is stored by Matomo, so retrying it (backoff 1, 2, 4 s) loses
    nothing and sends nothing twice. Lost: nothing. Duplicates: none.
    """
    with RecordingMatomo() as matomo, running(tmp_path, matomo) as (audience, daemon, db):
        first = audience.join(PLAYERS[0])
        wait_for(lambda: matomo.requests, 10, "the first start")
        matomo.fail_with(500)
        second = audience.join(PLAYERS[1])
        wait_for(lambda: matomo.failed_posts >= 2, 10, "two answers 500")
        audience.leave(first)
        matomo.fail_with(503)
        third = audience.join(PLAYERS[2])
        wait_for(lambda: matomo.failed_posts >= 3, 10, "an answer 503")
        matomo.recover()
        audience.leave(second)
        audience.leave(third)
        drained(db, matomo, 3)
        failed = sorted({b.status for b in matomo.batches if b.status != 200})
    report = check_delivery(audience.seen, matomo.requests)
    assert report.duplicates == 0
    assert failed == [500, 503]
    assert "HTTP 500" in daemon.logs()
    assert "HTTP 503" in daemon.logs()
    figures(f"{report.line()}; {matomo.failed_posts} posts answered {failed}")


def test_hanging_past_the_timeout_sends_the_batch_in_flight_again(
    tmp_path: Path, figures: Figures
) -> None:
    """Matomo stores each batch, then holds its answer 2.5 s, past `matomo.timeout = 1`.

    audimeter cannot know the batch was stored, so it sends the same batch again after each
    timeout: the requests of the batch in flight arrive more than once. Lost: nothing.
    Duplicates: at most `batch_size` per timed-out post, all of them copies of at most
    `batch_size` distinct requests (only the batch in flight is ever sent again).
    """
    with (
        RecordingMatomo() as matomo,
        running(tmp_path, matomo, matomo_timeout=1) as (
            audience,
            daemon,
            db,
        ),
    ):
        first = audience.join(PLAYERS[0])
        wait_for(lambda: matomo.requests, 10, "the first start")
        matomo.delay(2.5)
        second = audience.join(PLAYERS[1])
        audience.leave(first)
        wait_for(
            lambda: daemon.logs().count("no answer from Matomo within the timeout") >= 2,
            15,
            "two timed-out posts",
        )
        matomo.delay(0)
        audience.leave(second)
        drained(db, matomo, 2)
        timeouts = daemon.logs().count("no answer from Matomo within the timeout")
    report = check_delivery(audience.seen, matomo.requests)
    assert 0 < report.duplicates <= timeouts * BATCH
    assert report.duplicated <= BATCH
    figures(
        f"{report.line()}; {timeouts} posts timed out, duplicate bound "
        f"{timeouts} x batch_size {BATCH} = {timeouts * BATCH}"
    )


def test_slow_answers_within_the_timeout(tmp_path: Path, figures: Figures) -> None:
    """Every answer takes 1 s, under `matomo.timeout = 2.5`: slow, never too slow.

    Lost: nothing. Duplicates: none (no answer is ever given up on).
    """
    with (
        RecordingMatomo() as matomo,
        running(tmp_path, matomo, matomo_timeout=2.5) as (
            audience,
            daemon,
            db,
        ),
    ):
        matomo.delay(1)
        uids = [audience.join(PLAYERS[i % len(PLAYERS)]) for i in range(6)]
        time.sleep(2)
        for uid in uids[:3]:
            audience.leave(uid)
        time.sleep(3)
        for uid in uids[3:]:
            audience.leave(uid)
        drained(db, matomo, 6)
    report = check_delivery(audience.seen, matomo.requests)
    assert report.duplicates == 0
    warnings = [line for line in daemon.logs().splitlines() if " WARNING " in line]
    assert not [line for line in warnings if "matomo" in line], warnings
    figures(report.line())


def test_requests_refused_in_a_batch_go_to_the_dead_letter_table(
    tmp_path: Path, figures: Figures
) -> None:
    """A super-user Matomo counts the requests of one listener invalid and names them.

    They move to the state file's `dead_letter` table with Matomo's reason, whole (its start
    and its end); the other listener's requests in the same batches are delivered. Lost:
    nothing (each request is either in Matomo or in `dead_letter`). Duplicates: none.
    """
    refused_ip = "127.0.9.9"
    with (
        RecordingMatomo(superuser=True) as matomo,
        running(tmp_path, matomo) as (
            audience,
            _,
            db,
        ),
    ):
        matomo.mark_invalid(lambda p: p.get("cip") == refused_ip)
        # Joined and left together: each of their batches holds both listeners' requests.
        refused = audience.join(PLAYERS[0], ip=refused_ip)
        kept = audience.join(PLAYERS[1])
        wait_for(lambda: matomo.requests, 10, "the accepted start")
        time.sleep(1)
        audience.leave(refused)
        audience.leave(kept)
        drained(db, matomo, 1)
        letters = dead_letters(db)
        invalid = sum(b.invalid for b in matomo.batches)
    accepted = [s for s in audience.seen if s.ip != refused_ip]
    report = check_delivery(accepted, matomo.requests)
    assert report.duplicates == 0
    assert letters, "nothing in the dead-letter table"
    assert all(reason.strip() for _, reason in letters)
    assert all(params["cip"] == refused_ip for params, _ in letters)
    check_delivery(
        [s for s in audience.seen if s.ip == refused_ip], [params for params, _ in letters]
    )
    assert len(letters) == invalid
    figures(
        f"{report.line()}; {len(letters)} refused request(s) in dead_letter "
        f"(reason: {letters[0][1]!r})"
    )


def test_a_refused_request_alone_in_its_batch_never_holds_the_outbox(
    tmp_path: Path, figures: Figures
) -> None:
    """One listener's requests are refused (and named) while it is the only one listening.

    A batch refused whole could mean a wrong site; the sink asks the Reporting API, learns that
    the token may write the site, so the requests are bad in themselves: they go to `dead_letter`
    at once and the outbox keeps flowing. Lost: nothing. Duplicates: none.
    """
    refused_ip = "127.0.9.10"
    with (
        RecordingMatomo(superuser=True) as matomo,
        running(tmp_path, matomo) as (
            audience,
            daemon,
            db,
        ),
    ):
        matomo.mark_invalid(lambda p: p.get("cip") == refused_ip)
        refused = audience.join(PLAYERS[0], ip=refused_ip)
        wait_for(lambda: matomo.batches, 10, "the refused start posted")
        time.sleep(1)
        audience.leave(refused)
        later = audience.join(PLAYERS[1])
        time.sleep(1)
        audience.leave(later)
        drained(db, matomo, 1, timeout=15)
        letters = dead_letters(db)
        held = daemon.logs().count("retrying in")
    report = check_delivery([s for s in audience.seen if s.ip != refused_ip], matomo.requests)
    assert report.duplicates == 0
    assert held == 0
    check_delivery([s for s in audience.seen if s.ip == refused_ip], [p for p, _ in letters])
    figures(f"{report.line()}; {len(letters)} refused request(s) in dead_letter, no retry")
