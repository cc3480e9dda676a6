"""Settings: every bad variable is named, the production rules, the project folder's .env, and what each way of
starting the app prints for a bad setting (one line, no traceback, a non-zero exit)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

import config
from config import ConfigError, load_settings

ROOT = config.ROOT
PROJECT_ENV_FILE = config.ENV_FILE  # before the fixture below points it at a test file
GOOD_PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "s" * 40,
    "DATA_KEY": Fernet.generate_key().decode(),
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    """No setting leaks in from the machine (or a developer's .env) into these tests."""
    for name in config.Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(config, "ENV_FILE", tmp_path / "absent.env")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DATABASE_URL", "nonsense", "expected sqlite:///"),
        ("DATABASE_URL", "mysql://u:secret@db/union", "unsupported database 'mysql'"),
        ("LOG_LEVEL", "loud", "expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("TIMEZONE", "Mars/Base", "unknown time zone"),
        ("APP_ENV", "staging", "development, test or production"),
        ("SANDBOX_ENABLED", "maybe", "boolean"),
        ("DATA_KEY", "short", "Fernet key"),
        ("WECOM_AES_KEY", "abc", "43 characters"),
        ("WECOM_AGENT_ID", "abc", "a whole number"),
        ("WECOM_AGENT_ID", "１０００００２", "a whole number"),  # full-width digits: int() would take them
        ("OUTBOX_MAX_ATTEMPTS", "many", "integer"),
    ],
)
def test_each_bad_variable_is_named_with_what_is_expected(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = info.value.message
    assert message.startswith(f"invalid configuration: {name}: ") and expected in message
    assert "\n" not in message and "secret" not in message  # one line; a URL's password is never echoed


def test_good_values_are_accepted_and_log_level_normalised(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u:p@127.0.0.1:5432/union")
    settings = load_settings()
    assert settings.LOG_LEVEL == "DEBUG" and settings.DATABASE_URL.startswith("postgresql+psycopg://")


def test_production_rules_name_every_broken_variable_once():
    with pytest.raises(ConfigError) as info:
        load_settings({"APP_ENV": "production"})
    message = info.value.message
    assert "SECRET_KEY: must be a random string of at least 32 characters" in message
    assert "DATA_KEY: required in production" in message
    assert "configuration: configuration" not in message and "SANDBOX_ENABLED" not in message

    with pytest.raises(ConfigError, match=r"SANDBOX_ENABLED: must be off when APP_ENV=production"):
        load_settings({**GOOD_PRODUCTION, "SANDBOX_ENABLED": True})
    with pytest.raises(ConfigError, match=r"^invalid configuration: SECRET_KEY: "):
        load_settings({**GOOD_PRODUCTION, "SECRET_KEY": "dev-" + "x" * 40})
    settings = load_settings(GOOD_PRODUCTION)
    assert settings.SANDBOX_ENABLED is False  # off by default in production
    assert load_settings({"APP_ENV": "development"}).SANDBOX_ENABLED is True


WECOM_APP = {
    "WECOM_CORP_ID": "wwcorp",
    "WECOM_AGENT_ID": "1000002",
    "WECOM_SECRET": "s",
    "WECOM_TOKEN": "t",
    "WECOM_AES_KEY": "a" * 43,
}


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"WECOM_CORP_ID": "wwcorp"}, "WECOM_AGENT_ID, WECOM_SECRET, WECOM_TOKEN, WECOM_AES_KEY"),
        ({**WECOM_APP, "WECOM_AGENT_ID": ""}, "WECOM_AGENT_ID"),
        ({"WECOM_AIBOT_TOKEN": "t"}, "WECOM_AIBOT_AES_KEY"),
        ({"FEISHU_APP_ID": "cli_x"}, "FEISHU_APP_SECRET"),
        ({"FEISHU_ENCRYPT_KEY": "k"}, "FEISHU_APP_ID, FEISHU_APP_SECRET"),
    ],
)
def test_a_half_filled_platform_names_what_is_missing(given, missing):
    with pytest.raises(ConfigError) as info:
        load_settings(given)
    message = info.value.message
    assert message.startswith(f"invalid configuration: {missing}: required for ") and "\n" not in message


def test_complete_platform_groups_are_enabled():
    settings = load_settings({**WECOM_APP, "FEISHU_APP_ID": "cli_x", "FEISHU_APP_SECRET": "s"})
    assert settings.wecom_enabled and settings.feishu_enabled and not settings.wecom_aibot_enabled
    aibot_only = load_settings({"WECOM_AIBOT_TOKEN": "t", "WECOM_AIBOT_AES_KEY": "a" * 43})
    assert aibot_only.wecom_aibot_enabled and not aibot_only.wecom_enabled  # the AI bot works on its own
    assert load_settings({**WECOM_APP, "WECOM_AGENT_ID": " 1000002 "}).WECOM_AGENT_ID == "1000002"


def test_dotenv_is_read_from_the_project_folder_not_the_current_directory(monkeypatch, tmp_path):
    assert config.Settings.model_config.get("env_file") is None  # only load_settings' explicit file counts
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / ".env").write_text("UNION_NAME=项目目录工会\nBOT_NAME=小助手\n", encoding="utf-8")
    (elsewhere / ".env").write_text("UNION_NAME=当前目录工会\nLOG_LEVEL=loud\n", encoding="utf-8")
    monkeypatch.setattr(config, "ENV_FILE", project / ".env")
    monkeypatch.chdir(elsewhere)
    settings = load_settings()
    assert (settings.UNION_NAME, settings.BOT_NAME, settings.LOG_LEVEL) == ("项目目录工会", "小助手", "INFO")
    monkeypatch.setenv("UNION_NAME", "环境变量工会")  # the environment wins over the file
    assert load_settings().UNION_NAME == "环境变量工会"


def test_the_dotenv_file_is_the_one_beside_app_py():
    assert PROJECT_ENV_FILE == ROOT / ".env" and (ROOT / "app.py").exists()


def _start(args: list[str], **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in config.Settings.model_fields}
    return subprocess.run(args, cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("how", "args"),
    [
        ("python app.py", [sys.executable, "app.py"]),
        ("flask", [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"]),
        ("gunicorn", [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0",
                      "app:create_app()"]),
    ],
)  # fmt: skip
def test_starting_with_a_bad_setting_prints_one_line_and_exits(how, args):
    done = _start(args, LOG_LEVEL="loud", DATABASE_URL="nonsense")
    assert done.returncode != 0
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "LOG_LEVEL: unknown level 'loud'" in lines[0] and "DATABASE_URL: not a database URL" in lines[0]
    assert "Traceback" not in done.stderr
