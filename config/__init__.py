"""Settings read from the environment and an optional `.env`, validated once at start-up."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from pydantic import ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
ENV_FILE = ROOT / ".env"  # the project folder's, whatever the current directory of the process
DATABASE_DRIVERS = {"sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


# (what, settings any one of which turns it on, settings it then needs). Feishu's Verification Token and Encrypt
# Key are optional (the long connection needs neither) but mean nothing without the app's ID and secret.
_WECOM_APP = ("WECOM_CORP_ID", "WECOM_AGENT_ID", "WECOM_SECRET", "WECOM_TOKEN", "WECOM_AES_KEY")
_WECOM_AIBOT = ("WECOM_AIBOT_TOKEN", "WECOM_AIBOT_AES_KEY")
_FEISHU_APP = ("FEISHU_APP_ID", "FEISHU_APP_SECRET")
PLATFORM_GROUPS = (
    ("the WeCom app", _WECOM_APP, _WECOM_APP),
    ("the WeCom AI bot", _WECOM_AIBOT, _WECOM_AIBOT),
    ("Feishu", (*_FEISHU_APP, "FEISHU_VERIFICATION_TOKEN", "FEISHU_ENCRYPT_KEY"), _FEISHU_APP),
)


class ConfigError(click.ClickException):
    """A message that names the bad variable. A ClickException, so `flask ...` prints one line and exits 1."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file_encoding="utf-8", extra="ignore")

    APP_ENV: str = "development"
    DATABASE_URL: str = f"sqlite:///{INSTANCE / 'union-bot.db'}"
    TIMEZONE: str = "Asia/Shanghai"
    SECRET_KEY: str = "dev-secret-key-change-me"
    DATA_KEY: str = ""
    DATA_KEY_OLD: str = ""
    SANDBOX_ENABLED: bool | None = None
    UNION_NAME: str = "示例医院工会"
    BOT_NAME: str = "工会小助手"
    DIALOG_TIMEOUT_MINUTES: int = 30
    BIND_MAX_ATTEMPTS: int = 5
    OUTBOX_MAX_ATTEMPTS: int = 8
    LOG_LEVEL: str = "INFO"
    HARDSHIP_FOLLOW_UP_DAYS: int = 30
    HARDSHIP_RETENTION_YEARS: int = 5

    WECOM_CORP_ID: str = ""
    WECOM_AGENT_ID: str = ""
    WECOM_SECRET: str = ""
    WECOM_TOKEN: str = ""
    WECOM_AES_KEY: str = ""
    WECOM_API_BASE: str = "https://qyapi.weixin.qq.com"
    WECOM_AIBOT_TOKEN: str = ""
    WECOM_AIBOT_AES_KEY: str = ""
    WECOM_API_CALLS_PER_MINUTE: int = 9000  # WeCom's cap: 10,000 a minute per company and API
    WECOM_API_CALLS_PER_HOUR: int = 140_000  # and 150,000 an hour

    FEISHU_APP_ID: str = ""
    FEISHU_APP_SECRET: str = ""
    FEISHU_VERIFICATION_TOKEN: str = ""
    FEISHU_ENCRYPT_KEY: str = ""
    FEISHU_API_BASE: str = "https://open.feishu.cn"

    @field_validator("APP_ENV")
    @classmethod
    def _env(cls, v: str) -> str:
        if v not in {"development", "test", "production"}:
            raise ValueError("must be development, test or production")
        return v

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, v: str) -> str:
        expected = "expected sqlite:///path/to/file.db or postgresql://user:password@host:5432/dbname"
        try:
            url = make_url(v)
        except ArgumentError:
            raise ValueError(f"not a database URL; {expected}") from None  # the value may hold a password
        if url.drivername not in DATABASE_DRIVERS:
            raise ValueError(f"unsupported database {url.drivername!r}; {expected}")
        return v

    @field_validator("LOG_LEVEL")
    @classmethod
    def _log_level(cls, v: str) -> str:
        level = v.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown level {v!r}; expected one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("TIMEZONE")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @field_validator("DATA_KEY", "DATA_KEY_OLD")
    @classmethod
    def _fernet_key(cls, v: str) -> str:
        if v:
            try:
                raw = base64.urlsafe_b64decode(v.encode())
            except (binascii.Error, ValueError) as exc:
                raise ValueError("must be a url-safe base64 Fernet key (32 bytes)") from exc
            if len(raw) != 32:
                raise ValueError("must be a url-safe base64 Fernet key (32 bytes)")
        return v

    @field_validator(
        "HARDSHIP_FOLLOW_UP_DAYS",
        "HARDSHIP_RETENTION_YEARS",
        "WECOM_API_CALLS_PER_MINUTE",
        "WECOM_API_CALLS_PER_HOUR",
    )
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be a whole number of at least 1")
        return v

    @field_validator("WECOM_AES_KEY", "WECOM_AIBOT_AES_KEY")
    @classmethod
    def _aes_key(cls, v: str) -> str:
        if v and len(v) != 43:
            raise ValueError("EncodingAESKey must be 43 characters")
        return v

    @field_validator("WECOM_AGENT_ID")
    @classmethod
    def _agent_id(cls, v: str) -> str:
        v = v.strip()
        if v and not (v.isascii() and v.isdigit()):
            raise ValueError("must be the app's AgentId, a whole number such as 1000002")
        return v

    @model_validator(mode="after")
    def _platform_groups(self) -> Settings:
        """A half-filled platform would count as off (or fail at the first send): name what is missing."""
        problems = []
        for label, switches, needs in PLATFORM_GROUPS:
            given = [n for n in switches if getattr(self, n)]
            missing = [n for n in needs if not getattr(self, n)]
            if given and missing:
                verb = "is" if len(given) == 1 else "are"
                problems.append(
                    f"{', '.join(missing)}: required for {label} because {', '.join(given)} {verb} set"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        """Each message starts with the variable's name (model-level errors carry no field of their own)."""
        if self.SANDBOX_ENABLED is None:
            self.SANDBOX_ENABLED = self.APP_ENV != "production"
        if self.APP_ENV == "production":
            problems = []
            if self.SANDBOX_ENABLED:
                problems.append("SANDBOX_ENABLED: must be off when APP_ENV=production")
            if self.SECRET_KEY.startswith("dev-") or len(self.SECRET_KEY) < 32:
                problems.append("SECRET_KEY: must be a random string of at least 32 characters in production")
            if not self.DATA_KEY:
                problems.append("DATA_KEY: required in production (a Fernet key, see the README)")
            if problems:
                raise ValueError("; ".join(problems))
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.TIMEZONE)

    @property
    def wecom_enabled(self) -> bool:
        return all(getattr(self, n) for n in _WECOM_APP)

    @property
    def wecom_aibot_enabled(self) -> bool:
        return all(getattr(self, n) for n in _WECOM_AIBOT)

    @property
    def feishu_enabled(self) -> bool:
        return all(getattr(self, n) for n in _FEISHU_APP)


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Build settings; a bad value raises ConfigError naming the variable and the problem."""
    try:
        return Settings(_env_file=ENV_FILE, **(overrides or {}))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {msg}" if name else msg)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
