"""The configuration file: one TOML file, validated before anything starts."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

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
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0

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


class SourceConfig(_Model):
    name: Name
    kind: Literal["icecast"]
    url: AnyHttpUrl
    username: str = "admin"
    password: SecretStr
    poll_interval: Annotated[float, Field(ge=0.2, le=3600)] = 10.0
    outage_grace: Annotated[int, Field(ge=0)] = 120
    timeout: Annotated[float, Field(gt=0, le=600)] = 10.0

    @property
    def base_url(self) -> str:
        return str(self.url).rstrip("/")


class Config(_Model):
    state: StateConfig = StateConfig()
    matomo: MatomoConfig | None = None
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
