"""The `audimeter` command line."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from audimeter import __version__
from audimeter.config import Config, ConfigError, exposure_warning, load_config
from audimeter.logs import LogFormat, setup_logging

if TYPE_CHECKING:
    from audimeter.status import StateReader

log = logging.getLogger("audimeter")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="audimeter.toml",
    show_default=True,
    envvar="AUDIMETER_CONFIG",
    help="The TOML configuration file (or the environment variable AUDIMETER_CONFIG).",
)


# The commands import what they need when they run, so that each starts quickly (a report
# should not pay for the HTTP clients of `run`).


def _load(path: Path) -> Config:
    try:
        config = load_config(path)
    except ConfigError as exc:
        click.echo(f"audimeter: config error: {exc}", err=True)
        sys.exit(2)
    warning = exposure_warning(path, config)
    if warning:
        click.echo(f"audimeter: warning: {warning}", err=True)
    return config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="audimeter")
def main() -> None:
    """Realtime listener analytics for Icecast and SHOUTcast, delivered to Matomo.

    audimeter polls your streaming servers, turns every listening session into exactly one
    Matomo visit (true start, true length, listener IP and player) and keeps listeners online
    in Matomo's real-time widgets while they listen.
    """


@main.command("run")
@config_option
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="How much to log.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Readable lines, or one JSON object per line.",
)
def run_command(config_path: Path, log_level: str, log_format: LogFormat) -> None:
    """Watch the sources and deliver sessions until SIGTERM or SIGINT.

    Without a [matomo] table, session events are printed to stdout as JSON lines. On stop,
    open sessions stay in the state file and continue on the next start.
    """
    from audimeter.metricsserver import MetricsServerError
    from audimeter.runner import run
    from audimeter.store import StoreError
    from audimeter.webhook import WebhookError

    setup_logging(log_level, log_format)
    config = _load(config_path)

    async def main_task() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(config, stop)

    try:
        asyncio.run(main_task())
    except (StoreError, WebhookError, MetricsServerError) as exc:
        log.error("%s", exc)
        sys.exit(1)


@main.command("check")
@config_option
def check_command(config_path: Path) -> None:
    """Check every source and Matomo; one line per check, exit status 0 only if all pass."""
    from audimeter.check import run_checks

    config = _load(config_path)
    results = asyncio.run(run_checks(config))
    for result in results:
        click.echo(result.line())
    sys.exit(0 if all(r.ok for r in results) else 1)


@main.command("import")
@config_option
@click.option(
    "--source",
    "source_name",
    required=True,
    metavar="NAME",
    help="The configured source whose logs these are (its filters, mounts and site apply).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help=(
        "Print the visit each session would become (start, seconds, requests, visitor, mount, "
        "IP); send and store nothing."
    ),
)
@click.argument(
    "logfiles",
    metavar="LOGFILE...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
def import_command(
    config_path: Path, source_name: str, dry_run: bool, logfiles: tuple[Path, ...]
) -> None:
    """Send the finished sessions of access logs to Matomo, each as one visit.

    LOGFILE is an Icecast access.log or a SHOUTcast W3C log, plain or gzipped. Each listener
    line becomes a session with its real start, length, address and player, filtered as live
    ones are. A file imported before (the same content, also gzipped) is skipped, so importing
    rotated logs again is safe. Exit status: 0 done, 1 a file or the delivery failed, 2 a
    configuration or usage error.
    """
    from audimeter.importer import ImportUsageError, run_import
    from audimeter.store import StoreError

    setup_logging("warning", "text")
    config = _load(config_path)
    try:
        code = run_import(config, source_name, logfiles, dry_run=dry_run)
    except ImportUsageError as exc:
        click.echo(f"audimeter: config error: {config_path}: {exc}", err=True)
        sys.exit(2)
    except StoreError as exc:
        log.error("%s", exc)
        sys.exit(1)
    sys.exit(code)


MATOMO_GDPR = (
    "matomo: audimeter cannot delete what Matomo already received; delete it there with "
    "Administration → Privacy → GDPR Tools (find the visitor's visits, e.g. by Visitor IP)"
)


@main.command("forget")
@config_option
@click.option(
    "--ip",
    "address_text",
    required=True,
    metavar="ADDRESS",
    help="The listener's IPv4 or IPv6 address, in any notation.",
)
def forget_command(config_path: Path, address_text: str) -> None:
    """Remove everything the state file holds about one listener address.

    Deletes the open sessions with that address (their end will never be sent to Matomo), the
    queued requests and dead letters whose cip it is (never sent), and webhook notices from it;
    prints how many of each. Stop `audimeter run` first: forget refuses while another process
    has the state file open. What Matomo already has is deleted with Matomo's GDPR tools.
    Exit status: 0 done, 1 the state file is in use or cannot be used, 2 not an address or a
    configuration error.
    """
    from audimeter.addresses import anonymize_address, parse_address
    from audimeter.inbox import Inbox, inbox_path
    from audimeter.privacy import forget
    from audimeter.store import Store, StoreError

    address = parse_address(address_text)
    if address is None:
        click.echo(f"audimeter: {address_text!r} is not an IPv4 or IPv6 address", err=True)
        sys.exit(2)
    config = _load(config_path)
    path = config.state.path
    if not path.exists():
        click.echo(f"nothing to remove: there is no state file {path}")
        click.echo(MATOMO_GDPR)
        sys.exit(0)
    try:
        store = Store.open_exclusive(path)  # StoreBusy while `audimeter run` has it open
    except StoreError as exc:
        click.echo(f"audimeter: {exc}", err=True)
        sys.exit(1)
    inbox = None
    try:
        # Opened only while the state file is held, so no daemon writes to it meanwhile.
        if inbox_path(path).exists():
            inbox = Inbox.open(inbox_path(path))
        report = forget(store, address, inbox)
    except StoreError as exc:
        click.echo(f"audimeter: {exc}", err=True)
        sys.exit(1)
    finally:
        if inbox is not None:
            inbox.close()
        store.close()
    click.echo(f"forgot {address} in {path}:")
    for line in report.lines():
        click.echo(line)
    network = anonymize_address(str(address))
    if config.privacy.ip == "anonymize" and network != str(address):
        click.echo(
            f'note: with [privacy] ip = "anonymize", audimeter keeps and sends {network}, shared '
            f"by every listener of that network; `audimeter forget --ip {network}` removes that"
        )
    click.echo(
        "note: a listener still connected is counted again when audimeter runs; "
        "filters.exclude_addresses keeps an address out for good"
    )
    click.echo(MATOMO_GDPR)


BREAKDOWNS = (
    *("day", "hour", "weekday", "daypart"),
    *("mount", "source", "site", "player", "country", "title"),
)


def _date(ctx: click.Context, param: click.Parameter, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from None


@main.command("report")
@config_option
@click.option(
    "--from",
    "first",
    required=True,
    metavar="YYYY-MM-DD",
    callback=_date,
    help="First day of the period (from its local midnight).",
)
@click.option(
    "--to",
    "last",
    required=True,
    metavar="YYYY-MM-DD",
    callback=_date,
    help="Last day of the period (to its end, inclusive).",
)
@click.option("--source", "source_name", metavar="NAME", help="Only this source's sessions.")
@click.option("--mount", metavar="MOUNT", help="Only this mount's sessions.")
@click.option("--by", type=click.Choice(BREAKDOWNS), help="One row per slice of time or value.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json", "html"]),
    default="table",
    show_default=True,
    help="What to write.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write to FILE instead of stdout.",
)
@click.option(
    "--timezone",
    metavar="ZONE",
    help="IANA time zone of the period, days and hours; [reports] timezone by default.",
)
def report_command(
    config_path: Path,
    first: date,
    last: date,
    source_name: str | None,
    mount: str | None,
    by: str | None,
    output_format: str,
    output: Path | None,
    timezone: str | None,
) -> None:
    """Audience metrics (sessions, TLH, Cume, AQH, ...) of the finished sessions in a period.

    Reads the history in the state file, also while `audimeter run` uses it. See docs/reports.md
    ("Audience reports") for what each number means. Exit status: 0 done, 1 the state file or
    the output cannot be used, 2 a configuration or usage error.
    """
    from zoneinfo import ZoneInfo

    from audimeter.config import check_timezone
    from audimeter.reports.history import HistoryError, read_plays, read_sessions
    from audimeter.reports.html import to_html
    from audimeter.reports.metrics import GROUPS, Report, collect, report
    from audimeter.reports.periods import quarter_grid
    from audimeter.reports.render import to_csv, to_json, to_table

    config = _load(config_path)

    def usage(message: str) -> NoReturn:
        click.echo(f"audimeter: report: {message}", err=True)
        sys.exit(2)

    if last < first:
        usage(f"--to {last} is before --from {first}")
    try:
        zone = ZoneInfo(check_timezone(timezone or config.reports.timezone))
    except ValueError as exc:
        usage(f"--timezone: {exc}")
    if source_name is not None and source_name not in {s.name for s in config.sources}:
        usage(f"--source {source_name!r} is not a source of {config_path}")
    grid = quarter_grid(first, last, zone)
    try:
        plays = []
        until = grid.end
        if by == "title":
            # Plays that started in the period count whole: their sessions are read to their end.
            where = {"source": source_name, "mount": mount}
            plays = read_plays(config.state.path, grid.start, grid.end, **where)
            until = max([grid.end, *(end for _, _, _, end in plays)])
        rows = read_sessions(
            config.state.path,
            grid.start,
            until,
            source=source_name,
            mount=mount,
            group=by if by in (*GROUPS, "title") else None,
        )
        result = report(
            collect(rows),
            grid,
            min_session=config.reports.min_session,
            by=by,
            dayparts=config.reports.parsed_dayparts,
            plays=plays,
        )
    except HistoryError as exc:
        click.echo(f"audimeter: {exc}", err=True)
        sys.exit(1)
    writers: dict[str, Callable[[Report], str]] = {
        "table": to_table,
        "csv": to_csv,
        "json": to_json,
        "html": to_html,
    }
    text = writers[output_format](result)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        click.echo(f"audimeter: cannot write {output}: {exc.strerror or exc}", err=True)
        sys.exit(1)


def _state_reader(config: Config) -> StateReader:
    from audimeter.status import StateReader, StatusError

    try:
        return StateReader(config.state.path)
    except StatusError as exc:
        click.echo(f"audimeter: {exc}", err=True)
        sys.exit(1)


@main.command("status")
@config_option
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="A screen for people, or one JSON object for scripts (keys in docs/status.md).",
)
def status_command(config_path: Path, output_format: str) -> None:
    """Show how the running `audimeter run` is doing, from the state file; a health check.

    Per source: kind, server version, last good poll and problem; per mount: listeners now,
    sessions and listening hours today ([reports] timezone); per output: pending events, the
    age of the oldest, dead letters. Reads the state file only, also while `audimeter run`
    writes it. Exit status: 0 healthy, 1 unhealthy (the problems are printed) or the state
    file cannot be read, 2 a configuration or usage error.
    """
    import time
    from zoneinfo import ZoneInfo

    from rich.console import Console

    from audimeter.screen import status_screen
    from audimeter.status import StatusError, to_json

    config = _load(config_path)
    reader = _state_reader(config)
    try:
        snapshot = reader.snapshot(config, time.time())
    except StatusError as exc:
        click.echo(f"audimeter: {exc}", err=True)
        sys.exit(1)
    finally:
        reader.close()
    if output_format == "json":
        click.echo(to_json(snapshot, config.state.path, config.reports.timezone), nl=False)
    else:
        Console(highlight=False).print(status_screen(snapshot, ZoneInfo(config.reports.timezone)))
    sys.exit(0 if snapshot.verdict.healthy else 1)


@main.command("top")
@config_option
def top_command(config_path: Path) -> None:
    """Watch listeners, joins and leaves live in the terminal; q or Ctrl-C quits.

    The screen of `audimeter status`, refreshed every second, with each mount's joins and
    leaves of the last minute and a sparkline of its listeners over the last hour. Needs a
    terminal: in scripts use `audimeter status --format json`. Exit status: 0 quit, 1 the state
    file cannot be read, 2 not a terminal or a configuration error.
    """
    from zoneinfo import ZoneInfo

    from audimeter.screen import run_top

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        click.echo(
            "audimeter: top needs a terminal; in scripts use `audimeter status --format json`",
            err=True,
        )
        sys.exit(2)
    config = _load(config_path)
    reader = _state_reader(config)
    try:
        run_top(
            lambda now: reader.snapshot(config, now, activity=True),
            ZoneInfo(config.reports.timezone),
        )
    finally:
        reader.close()
