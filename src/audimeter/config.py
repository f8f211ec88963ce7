"""The configuration file: one TOML file, validated before anything starts."""

from __future__ import annotations

import os
import re
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from audimeter.reports.dayparts import DEFAULT_DAYPARTS, Daypart, parse_dayparts

TOKEN_ENV = "AUDIMETER_MATOMO_TOKEN_AUTH"  # noqa: S105 (a variable name)

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateConfig(_Model):
    path: Path = Path("audimeter.db")


class MatomoConfig(_Model):
    url: AnyHttpUrl
    site_id: Annotated[int, Field(ge=1)]
    token_auth: SecretStr = SecretStr("")
    keepalive_interval: Annotated[int, Field(ge=1)] = 120
    visit_length: Annotated[int, Field(ge=2)] = 1800
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 200
    import_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 1000
    """Tracking requests per bulk POST of `audimeter import`: a backlog of millions goes faster
    in larger batches."""
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    outbox_limit: Annotated[int, Field(ge=1000)] = 1_000_000
    """Requests the outbox may hold; beyond it keep-alives are no longer queued
    (docs/guarantees.md)."""
    dimensions: dict[str, Annotated[int, Field(ge=1, le=999)]] = {}
    """Listener query parameters sent as Matomo custom dimensions: {"param": dimension id}."""
    now_playing_dimension: Annotated[int, Field(ge=1, le=999)] | None = None
    """The id of an action-scoped custom dimension that keep-alives and ends carry the title on
    air in."""

    @model_validator(mode="after")
    def _one_dimension_one_meaning(self) -> MatomoConfig:
        taken = {d: p for p, d in self.dimensions.items()}
        if self.now_playing_dimension in taken:
            raise ValueError(
                f"now_playing_dimension ({self.now_playing_dimension}) is the dimension of the "
                f"query parameter {taken[self.now_playing_dimension]!r} in matomo.dimensions: "
                "give each its own dimension id"
            )
        return self

    @model_validator(mode="after")
    def _interval_below_visit_length(self) -> MatomoConfig:
        if self.keepalive_interval >= self.visit_length:
            raise ValueError(
                f"keepalive_interval ({self.keepalive_interval}) must be less than visit_length "
                f"({self.visit_length}), or Matomo splits long listens into several visits"
            )
        return self

    @property
    def tracking_url(self) -> str:
        return str(self.url).rstrip("/") + "/matomo.php"

    @property
    def api_url(self) -> str:
        return str(self.url).rstrip("/") + "/index.php"


Network = IPvAnyNetwork
SiteId = Annotated[int, Field(ge=1)]

DEFAULT_EXCLUDED_USER_AGENTS = (
    r"^icecast",  # another Icecast relaying the stream
    r"shoutcast|sc_serv",  # a SHOUTcast relay
    r"liquidsoap",
    r"streamripper|ripper|radiosure.*record",
    r"uptimerobot|pingdom|statuscake|site24x7|nagios|check_http|zabbix|monit/|"
    r"prometheus|blackbox|updown\.io|hetrixtools|freshping",
    r"bot\b|spider|crawler",
    r"^curl/|^wget/|^python-requests|^python-httpx|^go-http-client",
    r"^audimeter/",
)


class SourceConfig(_Model):
    name: Name
    kind: Literal["icecast", "shoutcast2", "shoutcast1"]
    url: AnyHttpUrl
    username: str = "admin"
    password: SecretStr
    poll_interval: Annotated[float, Field(ge=0.2, le=3600)] = 10.0
    outage_grace: Annotated[int, Field(ge=0)] = 120
    timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
    streams: list[Annotated[int, Field(ge=1)]] | None = None
    """SHOUTcast 2 stream ids to poll; all streams the server lists when absent."""
    site_id: SiteId | None = None
    """The Matomo site of this source's sessions; matomo.site_id when absent."""
    sites: dict[str, SiteId] = {}
    """Matomo site per mount (or SHOUTcast 2 stream id), overriding site_id."""
    public_url: AnyHttpUrl | None = None
    """The URL listeners use, shown in Matomo; url when absent."""
    title: str = "{source} {mount}"
    include: list[str] = []
    """Mount patterns (shell-style, e.g. "/live*") to follow; every mount when empty."""
    exclude: list[str] = []
    trusted_proxies: list[Network] = []
    access_log: Path | None = None
    """The server's access log to follow: Icecast's combined log, SHOUTcast's W3C log."""
    reconcile_delay: Annotated[float, Field(ge=0, le=3600)] = 15.0
    """With an access log or the webhook, seconds a session missing from a poll waits for its
    exact end from the log or the server before it ends at its last sighting."""

    @field_validator("title")
    @classmethod
    def _known_placeholders(cls, title: str) -> str:
        try:
            title.format(source="", mount="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"unknown placeholder or stray brace {exc}; use {{source}} and {{mount}}"
            ) from None
        return title

    @model_validator(mode="after")
    def _streams_for_shoutcast2(self) -> SourceConfig:
        if self.streams is not None and self.kind != "shoutcast2":
            raise ValueError('streams applies to kind = "shoutcast2" only')
        return self

    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")

    @property
    def stream_base_url(self) -> str:
        return str(self.public_url or self.url).rstrip("/")

    def wants_mount(self, mount: str) -> bool:
        """Whether the include and exclude patterns let this mount be followed."""
        if self.include and not any(fnmatchcase(mount, p) for p in self.include):
            return False
        return not any(fnmatchcase(mount, p) for p in self.exclude)


class _Listening(_Model):
    """A server of audimeter's own: `listen` is its host:port (an IPv6 host in brackets)."""

    listen: str
    example: ClassVar[str] = "127.0.0.1:8765"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, listen: str) -> str:
        host, _, port = listen.rpartition(":")
        bare = host.removeprefix("[").removesuffix("]")
        bracketed = host.startswith("[") and host.endswith("]")
        if (
            not bare
            or not port.isdigit()
            or not 0 <= int(port) < 65536
            or (":" in bare) != bracketed
        ):
            raise ValueError(
                f'{listen!r} is not host:port, e.g. "{cls.example}" (IPv6 in brackets: '
                f'"[::1]:{cls.example.rpartition(":")[2]}")'
            )
        return listen

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class WebhookConfig(_Listening):
    listen: str = "127.0.0.1:8765"
    """host:port of the receiver for Icecast's URL authentication."""
    username: str = "icecast"
    password: SecretStr
    """What Icecast sends as HTTP Basic credentials (its `username` and `password` options)."""
    max_body: Annotated[int, Field(ge=4096, le=1_048_576)] = 65_536
    """Icecast's form can be 4 KiB with long user agents, referrers and queries."""


class MetricsConfig(_Listening):
    """`audimeter run` serves Prometheus metrics (/metrics) and its health (/healthz) there."""

    example: ClassVar[str] = "127.0.0.1:9464"


class HealthConfig(_Model):
    delivery_lag: Annotated[float, Field(gt=0)] = 300
    """Seconds; an output whose oldest undelivered event is older is unhealthy."""


class FiltersConfig(_Model):
    exclude_user_agents: list[str] = list(DEFAULT_EXCLUDED_USER_AGENTS)
    """Regular expressions (case-insensitive, searched anywhere in the user agent)."""
    exclude_addresses: list[Network] = []
    min_session: Annotated[int, Field(ge=0)] = 0
    """Seconds a session must last before it counts; shorter ones are never sent."""

    @field_validator("exclude_user_agents")
    @classmethod
    def _valid_patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression ({exc})") from None
        return patterns


IpPrivacy = Literal["full", "anonymize", "none"]
UserAgentPrivacy = Literal["keep", "drop"]
SaltRotation = Literal["never", "daily", "weekly", "monthly"]


class PrivacyConfig(_Model):
    """How much of a listener audimeter keeps and sends (applied once filters and proxies ran)."""

    ip: IpPrivacy = "full"
    """full: the address as the server reports it; anonymize: IPv4 /24, IPv6 /48; none: none."""
    user_agent: UserAgentPrivacy = "keep"
    salt_rotation: SaltRotation = "never"
    """How often the visitor-id salt changes (UTC periods; weeks start on Monday)."""


class JsonlConfig(_Model):
    path: str
    """The file every event is appended to as a JSON line; "-" for standard output."""
    outbox_limit: Annotated[int, Field(ge=1000)] | None = None
    """Events it may lag behind before keep-alives are skipped for it; none by default."""


class HistoryConfig(_Model):
    keep_days: Annotated[int, Field(ge=1)] = 400
    """Days finished sessions are kept in the history."""
    geoip: Path | None = None
    """A GeoIP country database (.mmdb) to record each finished session's country from."""

    @field_validator("geoip")
    @classmethod
    def _readable_database(cls, path: Path | None) -> Path | None:
        if path is not None:
            # Imported here: the country lookup reads addresses, whose module needs this one.
            from audimeter.geo import open_countries

            open_countries(path).close()
        return path


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a time zone of the IANA database, e.g. UTC or Europe/Berlin"
        ) from None
    return name


class ReportsConfig(_Model):
    """`audimeter report`: the defaults of its period and what counts."""

    timezone: str = "UTC"
    """The zone of report periods, days, hours and dayparts (IANA name)."""
    min_session: Annotated[int, Field(ge=1)] = 60
    """Seconds a session must last to count in the metrics."""
    dayparts: dict[str, str] = dict(DEFAULT_DAYPARTS)
    """Name -> "Mon-Fri 06:00-10:00"; setting the table replaces the standard set."""

    _timezone = field_validator("timezone")(check_timezone)

    @field_validator("dayparts")
    @classmethod
    def _valid_dayparts(cls, dayparts: dict[str, str]) -> dict[str, str]:
        for name, spec in dayparts.items():
            try:
                parse_dayparts({name: spec})
            except ValueError as exc:
                raise ValueError(f"{name!r}: {exc}") from None
        return dayparts

    @property
    def parsed_dayparts(self) -> tuple[Daypart, ...]:
        return parse_dayparts(self.dayparts)


class Config(_Model):
    state: StateConfig = StateConfig()
    matomo: MatomoConfig | None = None
    jsonl: JsonlConfig | None = None
    history: HistoryConfig = HistoryConfig()
    filters: FiltersConfig = FiltersConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    webhook: WebhookConfig | None = None
    reports: ReportsConfig = ReportsConfig()
    metrics: MetricsConfig | None = None
    health: HealthConfig = HealthConfig()
    sources: Annotated[list[SourceConfig], Field(min_length=1)]
    keepalive_interval: Annotated[int, Field(ge=1)] = 120
    """Used when there is no [matomo] table; with one, matomo.keepalive_interval applies."""

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        seen: set[str] = set()
        for source in sources:
            if source.name in seen:
                raise ValueError(f"two sources are named {source.name!r}; names must be unique")
            seen.add(source.name)
        return sources

    @model_validator(mode="after")
    def _keepalive_fits_polling(self) -> Config:
        if self.matomo is None:
            return self
        slowest = max(s.poll_interval for s in self.sources)
        if self.matomo.keepalive_interval + slowest >= self.matomo.visit_length:
            raise ValueError(
                f"matomo.keepalive_interval ({self.matomo.keepalive_interval}) plus the longest "
                f"poll_interval ({slowest:g}) must be less than matomo.visit_length "
                f"({self.matomo.visit_length}): a keep-alive can be one poll late"
            )
        return self

    @property
    def effective_keepalive(self) -> int:
        return self.matomo.keepalive_interval if self.matomo else self.keepalive_interval

    def warnings(self) -> list[str]:
        """Settings that work but probably not as intended."""
        found = []
        if self.matomo is not None:
            slowest = max(s.poll_interval for s in self.sources)
            if self.matomo.keepalive_interval + slowest > 180:
                found.append(
                    f"matomo.keepalive_interval ({self.matomo.keepalive_interval}) plus the "
                    f"longest poll_interval ({slowest:g}) exceeds 180 s: listeners will drop out "
                    "of Matomo's real-time counters (last 3 minutes) between keep-alives"
                )
            if self.privacy.ip == "none":
                found.append(
                    'privacy.ip = "none": Matomo records the address audimeter connects from '
                    "for every visit and locates every listener there; turn geolocation off in "
                    "Matomo if its location reports mislead"
                )
        return found


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required but missing"
    if kind == "extra_forbidden":
        return "not a known key (check its spelling)"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def parse_config(data: dict[str, Any], origin: str = "config") -> Config:
    matomo = data.get("matomo")
    if isinstance(matomo, dict) and not matomo.get("token_auth") and os.environ.get(TOKEN_ENV):
        data = {**data, "matomo": {**matomo, "token_auth": os.environ[TOKEN_ENV]}}
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_location(e['loc']) or 'file'}: {_describe(e)}" for e in exc.errors()]
        raise ConfigError(f"{origin}: " + "; ".join(problems)) from None
    if config.matomo is not None and not config.matomo.token_auth.get_secret_value():
        raise ConfigError(
            f"{origin}: matomo.token_auth: required but missing "
            f"(set it in the file or in the environment variable {TOKEN_ENV})"
        )
    return config


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (pass --config with the path of your TOML file)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(data, str(path))


def exposure_warning(path: Path, config: Config) -> str | None:
    """A warning when the file holds secrets and users other than its owner may read it."""
    holds_secrets = any(s.password.get_secret_value() for s in config.sources) or bool(
        config.matomo and config.matomo.token_auth.get_secret_value()
    )
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if holds_secrets and mode & 0o044:
        return (
            f"{path} holds passwords or token_auth and other users may read it: "
            f"chmod 600 {path} (or move token_auth to {TOKEN_ENV})"
        )
    return None
