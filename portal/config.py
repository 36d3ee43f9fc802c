"""Tessera's configuration: one schema, every default in ``config/default.toml``.

Settings are layered, later layers winning: ``config/default.toml`` (shipped as
package data), an optional TOML file, environment variables
``TESSERA_<SECTION>_<KEY>`` and finally overrides from command-line flags.
Anything that does not name a known setting, or a value of the wrong type or
out of range, is a :class:`ConfigError` naming the setting and where the value
came from: a typo in a config file must not silently fall back to a default.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import ErrorDetails

from tessera.config.validation import error_path, format_error

__all__ = [
    "Config",
    "ConfigError",
    "LogConfig",
    "PeerConfig",
    "PortalConfig",
    "ServerConfig",
    "ServiceConfig",
    "StorageConfig",
    "TokensConfig",
    "WebConfig",
    "WebRTCConfig",
    "load_config",
]

ENV_PREFIX = "TESSERA_"
DEFAULTS_SOURCE = "config/default.toml"
# The least a service key may hold: HS256 wants a 256-bit secret (RFC 7518 3.2).
MIN_KEY_LENGTH = 32
# The checkout Tessera runs from (scripts/serve.sh installs it editable): web/ and node_modules/.
SOURCE_TREE = Path(__file__).resolve().parents[1]


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the setting and its source."""


# A duration in seconds; ints are accepted (strict mode allows int -> float).
Seconds = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    # Strict: a TOML string "8080" for a port is a mistake worth reporting, not coercing.
    # No field has a default here: default.toml is the one place defaults live.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class ServerConfig(_Section):
    """``[server]``: where the HTTP/Socket.IO server listens and how it is reached."""

    host: str = Field(min_length=1, pattern=r"^\S+$")
    port: int = Field(ge=0, le=65535)
    public_host: str = Field(pattern=r"^[^\s/]*$")
    secure: bool
    shutdown_timeout: Seconds
    header_timeout: Seconds
    body_timeout: Seconds
    idle_timeout: Seconds
    max_connections: int = Field(ge=0)
    connections_per_address: int = Field(ge=0)
    ready_max_loop_lag: Seconds
    malloc_arenas: int = Field(ge=0, le=1024)
    malloc_trim_threshold: int = Field(ge=0, le=1 << 30)
    media_check: bool


class StorageConfig(_Section):
    """``[storage]``: where Tessera keeps its state."""

    data_dir: str
    database: str


class TokensConfig(_Section):
    """``[tokens]``: join tokens issued to clients."""

    lifetime: Seconds
    single_use: bool


class PortalConfig(_Section):
    """``[portal]``: Socket.IO session limits."""

    login_timeout: Seconds
    reconnection_keep: Seconds
    ticket_lifetime: Seconds
    ping_interval: Seconds
    ping_timeout: Seconds
    max_message_bytes: int = Field(gt=0)
    text_max_length: int = Field(gt=0)


_ORIGIN_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/\s]+$")
_STUN_RE = re.compile(r"^stuns?:[^\s/]+$")


class ServiceConfig(_Section):
    """``[service]``: the service (tenant) created on first start, and its default room."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    key: str
    allowed_origins: list[str]
    adhoc_rooms: bool
    default_room: str = Field(min_length=1, max_length=256)
    recording: bool
    peer_tokens: bool

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        if value and len(value) < MIN_KEY_LENGTH:
            raise ValueError(
                f"a service key needs at least {MIN_KEY_LENGTH} characters "
                "(leave it empty to have one generated)"
            )
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            # Browsers send "scheme://host[:port]" with no path: anything else never matches.
            if origin != "*" and not _ORIGIN_RE.match(origin):
                raise ValueError(
                    f"{origin!r} is not an origin like 'https://app.example' or 'http://host:8080'"
                )
        return value


class WebRTCConfig(_Section):
    """``[webrtc]``: media-plane settings."""

    keyframe_min_interval: Seconds
    connect_timeout: Seconds
    stun_servers: list[str]
    max_transcodes: int = Field(ge=0, le=100_000)

    @field_validator("stun_servers")
    @classmethod
    def _check_stun(cls, value: list[str]) -> list[str]:
        for url in value:
            if not _STUN_RE.match(url):
                raise ValueError(f"{url!r} is not a STUN URL like 'stun:stun.example.org:3478'")
        return value


_OVERLAY_RE = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)


class MixerConfig(_Section):
    """``[mixer]``: mixed streams (views)."""

    frame_timeout: Seconds
    max_mixed_talkers: int = Field(ge=0, le=1000)
    # "module:Class" overlays views may load (tessera.mixer.overlay), besides the example.
    overlays: list[str] = Field(max_length=64)

    @field_validator("overlays")
    @classmethod
    def _check_overlays(cls, value: list[str]) -> list[str]:
        for spec in value:
            if not _OVERLAY_RE.match(spec):
                raise ValueError(
                    f"{spec!r} is not an overlay class name like 'package.module:Class'"
                )
        return value


class RecordingConfig(_Section):
    """``[recording]``: where recordings go, and the free space they leave."""

    directory: str
    disk_reserve_mb: int = Field(ge=0, le=1 << 30)


class LimitsConfig(_Section):
    """``[limits]``: what one client or one service may use."""

    publications_per_participant: int = Field(gt=0)
    subscriptions_per_participant: int = Field(gt=0)
    rooms_per_service: int = Field(gt=0)
    recordings_per_room: int = Field(gt=0)
    recordings_per_service: int = Field(gt=0)
    streaming_outs_per_room: int = Field(gt=0)
    streaming_outs_per_service: int = Field(gt=0)
    requests_per_second: float = Field(gt=0)
    request_burst: int = Field(gt=0)
    login_attempts_per_minute: int = Field(gt=0)


class WebConfig(_Section):
    """``[web]``: the conference page, the admin page and the demo app-server endpoints."""

    enabled: bool
    directory: str
    node_modules: str
    demo: Literal["loopback", "on", "off"]
    demo_with_public_host: bool
    moderator_roles: list[str]

    @model_validator(mode="after")
    def _check_demo(self) -> WebConfig:
        if self.demo_with_public_host and self.demo == "off":
            raise ValueError('demo_with_public_host = true has no effect with demo = "off"')
        return self


class PeerConfig(_Section):
    """``[peer]``: the PeerJS-compatible signaling endpoint (peer model)."""

    path: str = Field(pattern=r"^/([A-Za-z0-9_.~-]+/)*$")
    alive_timeout: Seconds
    expire_timeout: Seconds
    concurrent_limit: int = Field(gt=0)
    allow_discovery: bool


class ClusterConfig(_Section):
    """``[cluster]``: several processes on Redis (``tessera portal``/``agent``; unused by
    ``tessera serve``)."""

    redis: str = Field(pattern=r"^(|rediss?://\S+|unix://\S+)$")
    request_timeout: Seconds
    lease: Seconds
    agent_max_rooms: int = Field(ge=0, le=100_000)


class LogConfig(_Section):
    """``[log]``: logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    format: Literal["text", "json"]

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        # "info" in a file or the environment is obviously meant as INFO.
        return value.upper() if isinstance(value, str) else value


class Config(_Section):
    """The whole configuration: one frozen model per section. Build it with :func:`load_config`."""

    server: ServerConfig
    storage: StorageConfig
    tokens: TokensConfig
    portal: PortalConfig
    service: ServiceConfig
    webrtc: WebRTCConfig
    mixer: MixerConfig
    recording: RecordingConfig
    limits: LimitsConfig
    peer: PeerConfig
    web: WebConfig
    cluster: ClusterConfig
    log: LogConfig

    def data_dir(self, env: Mapping[str, str] | None = None) -> Path:
        """Directory for Tessera's state (``storage.data_dir`` or the XDG data directory)."""
        if self.storage.data_dir:
            return Path(self.storage.data_dir).expanduser()
        env = os.environ if env is None else env
        xdg = env.get("XDG_DATA_HOME", "")
        # The XDG spec says relative paths in XDG_* are invalid and must be ignored.
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
        return base / "tessera"

    def database_path(self, env: Mapping[str, str] | None = None) -> Path:
        """The SQLite file (``:memory:`` is passed through); relative paths are in data_dir."""
        database = self.storage.database
        if database == ":memory:":
            return Path(database)
        if not database:
            return self.data_dir(env) / "tessera.sqlite3"
        path = Path(database).expanduser()
        return path if path.is_absolute() else self.data_dir(env) / path

    def recording_dir(self, env: Mapping[str, str] | None = None) -> Path:
        """Where recordings are written (``recording.directory`` or <data_dir>/recordings)."""
        if self.recording.directory:
            return Path(self.recording.directory).expanduser()
        return self.data_dir(env) / "recordings"

    def web_dir(self) -> Path:
        """The conference page's folder (``web.directory`` or web/ in the source tree)."""
        if self.web.directory:
            return Path(self.web.directory).expanduser()
        return SOURCE_TREE / "web"

    def node_modules_dir(self) -> Path:
        """Where ``npm ci`` installed the browser packages (``web.node_modules``)."""
        if self.web.node_modules:
            return Path(self.web.node_modules).expanduser()
        return SOURCE_TREE / "node_modules"

    def advertised_host(self, port: int | None = None) -> str:
        """``host:port`` that clients connect to, as written into join tokens.

        ``port`` is the port actually bound, for when ``server.port`` is 0.
        """
        if self.server.public_host:
            return self.server.public_host
        host = self.server.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal needs brackets before ":port"
        return f"{host}:{self.server.port if port is None else port}"


# Every section of Config by its name; one place to add a section (the Config class).
SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation
    for name, field in Config.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, _Section)
}


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration: defaults, then the file at ``path``, environment, overrides.

    ``env`` defaults to ``os.environ``. ``overrides`` maps dotted keys
    (``"server.port"``) to values; ``None`` values are skipped so that unset
    command-line flags can be passed as they are.
    """
    data: dict[str, dict[str, Any]] = {}
    sources: dict[tuple[str, str], str] = {}
    _merge(data, sources, _read_defaults(), DEFAULTS_SOURCE)
    if path is not None:
        _merge(data, sources, _read_toml(path), path)
    _merge_env(data, sources, os.environ if env is None else env)
    _merge_overrides(data, sources, overrides or {})
    try:
        return Config.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe(exc, sources)) from None


def _read_defaults() -> dict[str, Any]:
    text = resources.files("tessera.config").joinpath("default.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}") from None


def _merge(
    data: dict[str, dict[str, Any]],
    sources: dict[tuple[str, str], str],
    layer: Mapping[str, Any],
    source: str,
) -> None:
    for section, values in layer.items():
        model = SECTIONS.get(section)
        if model is None:
            raise ConfigError(f"unknown key {section!r} in {source}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{section}: expected a table [{section}] in {source}")
        for key, value in values.items():
            if key not in model.model_fields:
                raise ConfigError(f"unknown key '{section}.{key}' in {source}")
            data.setdefault(section, {})[key] = value
            sources[section, key] = source


def _merge_env(
    data: dict[str, dict[str, Any]],
    sources: dict[tuple[str, str], str],
    env: Mapping[str, str],
) -> None:
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        section, key = _split_env_name(name)
        model = SECTIONS[section]
        value = _parse_env_value(model.model_fields[key].annotation, raw, f"{section}.{key}", name)
        data.setdefault(section, {})[key] = value
        sources[section, key] = name


def _split_env_name(name: str) -> tuple[str, str]:
    rest = name[len(ENV_PREFIX) :].lower()
    for section, model in SECTIONS.items():
        if rest.startswith(section + "_"):
            key = rest[len(section) + 1 :]
            if key in model.model_fields:
                return section, key
            raise ConfigError(f"unknown key '{section}.{key}' (from {name})")
    raise ConfigError(
        f"{name} does not name a setting: expected {ENV_PREFIX}<SECTION>_<KEY> "
        f"with SECTION one of {', '.join(s.upper() for s in SECTIONS)}"
    )


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_env_value(annotation: Any, raw: str, key: str, name: str) -> Any:
    """Parse an environment string into the type of the field it sets."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{key}: expected {expected}, got {raw!r} (from {name})")

    text = raw.strip()
    if annotation is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise fail("true or false")
    if annotation is int:
        try:
            return int(text)
        except ValueError:
            raise fail("an integer") from None
    if annotation is float:
        try:
            return float(text)
        except ValueError:
            raise fail("a number") from None
    if get_origin(annotation) is not list:
        return raw  # str and Literal[...] fields take the string as it is
    # A list of strings: a JSON list or comma-separated items.
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            raise fail("a JSON list of strings") from None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise fail("a JSON list of strings")
        return value
    return [item.strip() for item in text.split(",") if item.strip()]


def _merge_overrides(
    data: dict[str, dict[str, Any]],
    sources: dict[tuple[str, str], str],
    overrides: Mapping[str, Any],
) -> None:
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        model = SECTIONS.get(section)
        if model is None or key not in model.model_fields:
            raise ConfigError(f"unknown key {dotted!r} (from overrides)")
        data.setdefault(section, {})[key] = value
        sources[section, key] = "overrides"


# Type errors read better as what was expected than as pydantic's wording.
_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "model_type": "expected a table",
    "dict_type": "expected a table",
}


def _describe(exc: pydantic.ValidationError, sources: Mapping[tuple[str, str], str]) -> str:
    return "; ".join(_describe_one(error, sources) for error in exc.errors(include_url=False))


def _describe_one(error: ErrorDetails, sources: Mapping[tuple[str, str], str]) -> str:
    loc = error["loc"]
    expected = _EXPECTED.get(error["type"])
    text = f"{error_path(loc)}: {expected}" if expected else format_error(error)
    if error["type"] != "missing":
        got = repr(error["input"])
        text += f", got {got if len(got) <= 60 else got[:57] + '...'}"
    source = sources.get((str(loc[0]), str(loc[1]))) if len(loc) >= 2 else None
    return f"{text} (from {source})" if source else text
