"""Configuration: a TOML file plus `ARCHBOT_<SECTION>__<KEY>` env overrides.

Secrets are never read from the file: they live in `Secrets`, which reads
only the environment. One `Settings` object is built at start and passed
down; nothing reads configuration from a global.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.errors import ConfigError

EXAMPLE_CONFIG = Path(__file__).with_name("config.example.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LLMSettings(_Section):
    model: str = "claude-sonnet-5-5"
    max_tokens: int = Field(4096, ge=1, le=128_000)
    max_tool_rounds: int = Field(8, ge=0, le=64)
    history_token_budget: int = Field(60_000, ge=1_000)
    daily_token_budget_per_user: int = Field(0, ge=0)
    max_concurrency: int = Field(16, ge=1, le=1024)
    timeout_seconds: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    delegate_max_tokens: int = Field(4096, ge=1, le=128_000)


class StorageSettings(_Section):
    path: str = "archbot.db"


class SlackSettings(_Section):
    enabled: bool = False
    mode: Literal["socket", "http"] = "socket"
    port: int = Field(3000, ge=0, le=65535)
    api_url: str = "https://slack.com/api/"


class DiscordSettings(_Section):
    enabled: bool = False
    api_url: str = "https://discord.com/api/v10"


class GitHubSettings(_Section):
    api_url: str = "https://api.github.com"
    default_repo: str = ""
    allowed_repos: list[str] = Field(default_factory=list)

    @field_validator("default_repo")
    @classmethod
    def _repo_shape(cls, value: str) -> str:
        if value and (value.count("/") != 1 or value.startswith("/") or value.endswith("/")):
            raise ValueError('must look like "owner/name"')
        return value

    def repo_allowed(self, repo: str, bound: set[str] | frozenset[str] = frozenset()) -> bool:
        """True when `repo` is the default, a bound repo, or matches an allowed glob."""
        repo_l = repo.lower()
        if self.default_repo and repo_l == self.default_repo.lower():
            return True
        if repo_l in {b.lower() for b in bound}:
            return True
        return any(fnmatch.fnmatchcase(repo_l, g.lower()) for g in self.allowed_repos)


class FetchSettings(_Section):
    allow_private_addresses: bool = False


class DiagramSettings(_Section):
    enabled: bool = True
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    max_nodes: int = Field(default=80, ge=1, le=500)


class LogSettings(_Section):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsSettings(_Section):
    port: int = Field(0, ge=0, le=65535)


class AccessSettings(_Section):
    allowed_channels: list[str] = Field(default_factory=list)
    allowed_users: list[str] = Field(default_factory=list)
    admins: list[str] = Field(default_factory=list)

    def channel_allowed(self, channel: str) -> bool:
        """An empty allow-list means every channel the bot is in."""
        return not self.allowed_channels or channel in self.allowed_channels

    def user_allowed(self, user: str) -> bool:
        """An empty allow-list means every user."""
        return not self.allowed_users or user in self.allowed_users

    def is_admin(self, user: str) -> bool:
        """With no admins configured, everyone may run admin commands."""
        return not self.admins or user in self.admins


class CheckinSettings(_Section):
    name: str
    platform: Literal["slack", "discord"] = "slack"
    channel: str
    repo: str = ""
    cron: str = "0 9 * * mon"
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"not a valid 5-field cron expression ({exc})") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone_known(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


class McpServerSettings(_Section):
    """One `[[mcp_servers]]` entry: an MCP server over stdio (command) or streamable HTTP (url)."""

    name: str = Field(pattern=r"^[A-Za-z0-9-]+(_[A-Za-z0-9-]+)*$", max_length=32)
    command: str = ""
    args: list[str] = Field(default_factory=list)
    env: list[str] = Field(default_factory=list)
    url: str = ""
    headers_env: dict[str, str] = Field(default_factory=dict)
    allowed_tools: list[str] = Field(default_factory=lambda: ["*"])
    channels: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(30.0, gt=0, le=600)

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        if value:
            from urllib.parse import urlsplit

            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL with a host")
            if parts.username or parts.password:
                # Credentials belong in headers_env, read from the environment.
                raise ValueError("must not carry a user or password: use headers_env")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or "=" in name or not name.isprintable() or " " in name:
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        if bool(self.command) == bool(self.url):
            raise ValueError("set either command (stdio) or url (streamable HTTP), not both")
        if self.headers_env and not self.url:
            raise ValueError("headers_env applies to url servers only")
        return self

    def tool_allowed(self, tool: str) -> bool:
        """True when the server's tool matches one of the `allowed_tools` globs."""
        return any(fnmatch.fnmatchcase(tool, g) for g in self.allowed_tools)

    def enabled_in(self, channel: str, channel_key: str) -> bool:
        """An empty `channels` list means every channel."""
        return not self.channels or channel in self.channels or channel_key in self.channels


class Settings(BaseSettings):
    """Everything configurable, validated; env `ARCHBOT_<SECTION>__<KEY>` wins over the file."""

    model_config = SettingsConfigDict(
        env_prefix="ARCHBOT_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    llm: LLMSettings = Field(default_factory=LLMSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    github: GitHubSettings = Field(default_factory=GitHubSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    diagrams: DiagramSettings = Field(default_factory=DiagramSettings)
    checkins: list[CheckinSettings] = Field(default_factory=list)
    mcp_servers: list[McpServerSettings] = Field(default_factory=list)

    @field_validator("mcp_servers")
    @classmethod
    def _unique_servers(cls, value: list[McpServerSettings]) -> list[McpServerSettings]:
        names = [s.name.lower() for s in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"server name {dupes[0]!r} is used twice")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = _TOML_PATH.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


class Secrets(BaseSettings):
    """Credentials, read from the environment only; never logged, never stored."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    anthropic_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL")
    )
    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    discord_token: SecretStr | None = Field(None, validation_alias="DISCORD_TOKEN")
    github_token: SecretStr | None = Field(None, validation_alias="GITHUB_TOKEN")

    @field_validator(
        "anthropic_api_key",
        "anthropic_base_url",
        "slack_bot_token",
        "slack_app_token",
        "slack_signing_secret",
        "discord_token",
        "github_token",
        mode="before",
    )
    @classmethod
    def _strip(cls, value: object) -> object:
        # A CRLF .env file or a pasted token leaves a \r or \n behind; no service
        # accepts one, and an escaped copy of it slips past exact-match redaction.
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            return value
        value = value.strip()
        if not value:
            return None
        if any(ch.isspace() or not ch.isprintable() for ch in value):
            # The message never echoes the value: pydantic would put it in the error.
            raise ValueError(_INSIDE_SECRET)
        return value

    @property
    def model_configured(self) -> bool:
        """A key or a base URL (a gateway or local server) means we can try the model."""
        return bool(
            (self.anthropic_api_key and self.anthropic_api_key.get_secret_value())
            or self.anthropic_base_url
        )


_INSIDE_SECRET = "contains a space, line break or control character inside it; set it again"

# pydantic-settings builds sources from the class; the path is handed over here
# for the duration of one load (loads happen once, at start, on one thread).
_TOML_PATH: dict[str, Path | None] = {}


def resolve_config_path(explicit: str | None) -> Path | None:
    """--config, else $ARCHBOT_CONFIG, else ./archbot.toml if present, else built-in defaults."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get("ARCHBOT_CONFIG")
    if from_env:
        return Path(from_env)
    local = Path("archbot.toml")
    return local if local.is_file() else None


def load_settings(config_path: Path | None) -> Settings:
    """Load and validate settings; raise ConfigError naming the key and the problem."""
    if config_path is not None:
        if not config_path.is_file():
            raise ConfigError(f"config file {config_path} not found")
        try:
            with config_path.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_path} is not valid TOML: {exc}") from None
    _TOML_PATH["path"] = config_path
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    finally:
        _TOML_PATH.pop("path", None)


def load_secrets() -> Secrets:
    """Read credentials from the environment, stripped; raise ConfigError naming a bad one."""
    try:
        return Secrets()
    except ValidationError as exc:
        # Never describe_validation_error here: it would show the offending value.
        names = ", ".join(
            str(err["loc"][0]).upper() if err["loc"] else "a secret" for err in exc.errors()
        )
        raise ConfigError(f"config: {names}: {_INSIDE_SECRET}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the first bad key and what is wrong with it (never the value of a secret)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "config"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    value: Any = err.get("input")
    shown = ""
    if err["type"] != "extra_forbidden" and isinstance(value, str | int | float | bool):
        shown = f" (got {value!r})"
    more = len(exc.errors()) - 1
    tail = f"; and {more} more problem{'s' if more > 1 else ''}" if more else ""
    return f"config: {loc}: {msg}{shown}{tail}"
