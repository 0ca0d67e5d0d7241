"""Configuration: file + env, defaults, one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import load_secrets, load_settings, resolve_config_path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "archbot.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    settings = load_settings(None)
    assert settings.llm.model == "claude-sonnet-5-5"
    assert settings.storage.path == "archbot.db"
    assert settings.slack.enabled is False and settings.discord.enabled is False


def test_env_wins_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[llm]\nmodel = "from-file"\nmax_tokens = 1000\n')
    monkeypatch.setenv("ARCHBOT_LLM__MODEL", "from-env")
    settings = load_settings(path)
    assert settings.llm.model == "from-env"
    assert settings.llm.max_tokens == 1000


def test_bad_value_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[llm]\nmax_tokens = "lots"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "llm.max_tokens" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "[slack]\nenabeld = true\n")
    with pytest.raises(ConfigError, match=r"slack\.enabeld: unknown key"):
        load_settings(path)


def test_secrets_are_not_accepted_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'anthropic_api_key = "sk-ant-in-a-file"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "sk-ant-in-a-file" not in str(err.value)


def test_bad_cron_and_timezone_are_explained(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[checkins]]\nname = "w"\nchannel = "C1"\ncron = "every monday"\n',
    )
    with pytest.raises(ConfigError, match=r"checkins\.0\.cron"):
        load_settings(path)
    path = write(tmp_path, '[[checkins]]\nname = "w"\nchannel = "C1"\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match="unknown timezone"):
        load_settings(path)


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[llm\nmodel=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_config_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path(None) is None
    (tmp_path / "archbot.toml").write_text("")
    assert resolve_config_path(None) == Path("archbot.toml")
    monkeypatch.setenv("ARCHBOT_CONFIG", "/elsewhere.toml")
    assert resolve_config_path(None) == Path("/elsewhere.toml")
    assert resolve_config_path("given.toml") == Path("given.toml")


def test_example_config_is_valid_and_complete() -> None:
    from bot.settings import EXAMPLE_CONFIG, Settings

    settings = load_settings(EXAMPLE_CONFIG)
    assert settings == Settings()  # the example documents the defaults
    text = EXAMPLE_CONFIG.read_text()
    for section, model in Settings.model_fields.items():
        if section in ("checkins", "mcp_servers"):
            assert f"[[{section}]]" in text
            continue
        for key in model.annotation.model_fields:  # type: ignore[union-attr]
            assert f"\n{key} = " in text, f"{section}.{key} missing from config.example.toml"


def test_secrets_come_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-env")
    secrets = load_secrets()
    assert secrets.model_configured
    assert "sk-ant-test-env" not in repr(secrets)
