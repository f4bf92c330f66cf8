from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, load_settings, parse_settings
from gateway.settings import ModelChoice


def parse(data: Any, **env: str) -> Any:
    warnings: list[str] = []
    settings = parse_settings(data, source="cfg.json5", environ=env, warn=warnings.append)
    return settings, warnings


def error_of(data: Any, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(data, **env)
    return str(info.value)


def test_defaults() -> None:
    settings, warnings = parse({})
    assert warnings == []
    assert settings.gateway.port == 18789
    assert settings.gateway.bind_host == "127.0.0.1"
    assert settings.gateway.auth.mode == "token"
    assert settings.gateway.http.chat_completions.enabled is False
    assert settings.gateway.http.chat_completions.max_body_bytes == 20 * 1024 * 1024
    assert [a.id for a in settings.agents.agents] == ["main"]
    assert settings.agents.default_id == "main"
    assert settings.agents.model_for(settings.agents.agents[0]) == ModelChoice("echo/echo")
    assert set(settings.providers) == {"echo"}


def test_enum_error_names_file_and_key_path() -> None:
    message = error_of({"gateway": {"auth": {"mode": "tokn"}}})
    assert (
        message == 'cfg.json5: gateway.auth.mode: expected one of token|password|none, got "tokn"'
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"gateway": {"port": "80"}}, 'cfg.json5: gateway.port: expected an integer, got "80"'),
        ({"gateway": {"port": 70000}}, "cfg.json5: gateway.port: expected at most 65535"),
        ({"gateway": []}, "cfg.json5: gateway: expected an object, got an array"),
        ({"agents": {"list": [{"id": "Bad Id"}]}}, "cfg.json5: agents.list[0].id: expected an id"),
        ({"agents": {"list": [{"id": "a"}, {"id": "a"}]}}, "agents.list[1].id: duplicate agent id"),
        (
            {"agents": {"defaults": {"model": "nope"}}},
            'agents.defaults.model: expected "provider/model"',
        ),
        (
            {"agents": {"defaults": {"model": "ghost/m"}}},
            "agents.defaults.model: unknown provider 'ghost'",
        ),
        (
            {"agents": {"defaults": {"model": {"primary": "echo/echo", "fallbacks": ["x/y"]}}}},
            "agents.defaults.model.fallbacks[0]: unknown provider 'x'",
        ),
        (
            {"models": {"providers": {"p": {"api": "openai-completions"}}}},
            "models.providers.p.baseUrl: required",
        ),
        (
            {"models": {"providers": {"echo": {"baseUrl": "http://x"}}}},
            "models.providers.echo: the provider id",
        ),
        (
            {"gateway": {"bind": "lan", "auth": {"mode": "none"}}},
            'gateway.auth.mode: "none" is refused',
        ),
        ([1], "cfg.json5: expected an object at the top level, got an array"),
    ],
)
def test_validation_errors(data: Any, expected: str) -> None:
    assert expected in error_of(data)


def test_unknown_keys_warn_and_are_ignored() -> None:
    settings, warnings = parse({"gateway": {"port": 1, "colour": "red"}, "channels": {}})
    assert settings.gateway.port == 1
    assert "cfg.json5: gateway.colour: unknown key, ignored" in warnings
    assert "cfg.json5: channels: unknown key, ignored" in warnings


def test_env_substitution() -> None:
    settings, _ = parse({"gateway": {"auth": {"token": "${MY_TOKEN}"}}}, MY_TOKEN="s3cret")
    assert settings.gateway.auth.token == "s3cret"
    assert "gateway.auth.token: environment variable NOPE is not set" in error_of(
        {"gateway": {"auth": {"token": "${NOPE}"}}}
    )


def test_auth_mode_and_env_fallbacks() -> None:
    settings, _ = parse({}, OPENCLAW_GATEWAY_TOKEN="t1")
    assert (settings.gateway.auth.mode, settings.gateway.auth.secret) == ("token", "t1")
    settings, _ = parse({}, OPENCLAW_GATEWAY_PASSWORD="pw")
    assert (settings.gateway.auth.mode, settings.gateway.auth.secret) == ("password", "pw")
    settings, _ = parse({"gateway": {"auth": {"token": "cfg"}}}, OPENCLAW_GATEWAY_TOKEN="env")
    assert settings.gateway.auth.token == "cfg"
    settings, _ = parse({"gateway": {"auth": {"mode": "none"}}})
    assert settings.gateway.auth.secret is None


def test_trusted_proxies() -> None:
    settings, warnings = parse({"gateway": {"trustedProxies": ["10.0.0.0/8", "127.0.0.1", "::1"]}})
    assert warnings == []
    assert settings.gateway.trusted_proxies == (
        IPv4Network("10.0.0.0/8"),
        IPv4Network("127.0.0.1/32"),
        IPv6Network("::1/128"),
    )
    hash(settings.gateway)  # frozen and hashable, like the rest
    assert parse({})[0].gateway.trusted_proxies == ()
    assert parse({"gateway": {"trustedProxies": []}})[0].gateway.trusted_proxies == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            ["127.0.0.1", "proxy.local"],
            "cfg.json5: gateway.trustedProxies[1]: expected an IP address or CIDR network, "
            "got 'proxy.local'",
        ),
        (["10.0.0.0/33"], "gateway.trustedProxies[0]: expected an IP address or CIDR network"),
        ([""], "gateway.trustedProxies[0]: expected an IP address or CIDR network, got ''"),
        ([10], "cfg.json5: gateway.trustedProxies[0]: expected a string, got a number"),
        ("127.0.0.1", "cfg.json5: gateway.trustedProxies: expected an array of strings"),
    ],
)
def test_trusted_proxies_errors(value: Any, expected: str) -> None:
    assert expected in error_of({"gateway": {"trustedProxies": value}})


def test_agents_and_providers() -> None:
    settings, _ = parse(
        {
            "models": {
                "providers": {
                    "local": {
                        "baseUrl": "http://127.0.0.1:11434/v1/",
                        "apiKey": "k",
                        "models": [{"id": "llama3", "contextWindow": 8192}],
                    },
                    "claude": {"baseUrl": "https://api.anthropic.com", "api": "anthropic-messages"},
                }
            },
            "agents": {
                "defaults": {"model": {"primary": "local/llama3", "fallbacks": ["claude/c"]}},
                "list": [{"id": "a"}, {"id": "b", "default": True, "model": "claude/c"}],
            },
        }
    )
    assert settings.providers["local"].base_url == "http://127.0.0.1:11434/v1"
    assert settings.providers["local"].models[0].context_window == 8192
    assert settings.providers["claude"].api == "anthropic-messages"
    assert settings.agents.default_id == "b"
    a, b = settings.agents.agents
    assert settings.agents.model_for(a).chain == ("local/llama3", "claude/c")
    assert settings.agents.model_for(b).chain == ("claude/c",)


def test_load_settings_files(tmp_path: Path) -> None:
    path = tmp_path / "openclaw.json"
    path.write_text("// comment\n{gateway: {port: 1234,},}\n")
    settings = load_settings(str(path), environ={"OPENCLAW_STATE_DIR": str(tmp_path)})
    assert settings.gateway.port == 1234
    assert settings.state_dir == tmp_path
    assert settings.gateway_dir == tmp_path / "gateway"
    path.write_text("{gateway: {port: 1,\n  bind: ,}}")
    with pytest.raises(ConfigError, match=rf"^{path}:2 Unexpected"):
        load_settings(str(path), environ={})
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(str(tmp_path / "missing.json"), environ={})
    env = {"OPENCLAW_CONFIG_PATH": str(path)}
    path.write_text("{}")
    assert load_settings(environ=env).config_path == path
