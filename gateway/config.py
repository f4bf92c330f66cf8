"""Loading the JSON5 configuration into frozen ``Settings``.

Where the file is: ``--config PATH`` > env ``OPENCLAW_CONFIG_PATH`` > ``~/.openclaw/openclaw.json``;
a missing file means all defaults. Every error names the file and the key path; unknown keys are
reported through ``warn`` and ignored so that an existing OpenClaw config loads.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import json5

from gateway.client_address import ProxyNetwork, proxy_network
from gateway.config_reader import ConfigError, Reader
from gateway.settings import (
    AGENT_ID_PATTERN,
    AgentDefaults,
    AgentSettings,
    AgentsSettings,
    AuthSettings,
    ChatCompletionsSettings,
    GatewaySettings,
    HttpSettings,
    LoggingSettings,
    MetricsSettings,
    ModelChoice,
    ModelSettings,
    ProviderSettings,
    RateLimitSettings,
    ResponsesSettings,
    Settings,
    StoreSettings,
    WsSettings,
)

__all__ = [
    "PROVIDER_APIS",
    "ConfigError",
    "load_settings",
    "parse_settings",
    "resolve_config_path",
]

logger = logging.getLogger("gateway.config")

# The ``models.providers.<id>.api`` kinds this gateway speaks (``echo`` is built in, not
# configurable); any other OpenClaw kind is refused at startup.
PROVIDER_APIS = (
    "openai-completions",
    "openai-responses",
    "anthropic-messages",
    "google-generative-ai",
    "ollama",
)

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_AGENT_ID = re.compile(AGENT_ID_PATTERN + r"\Z")
_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}

# The defaults live in the settings dataclasses; read from there, written once.
_GATEWAY = GatewaySettings()
_HTTP = HttpSettings()
_RATE_LIMIT = RateLimitSettings()
_DEFAULTS = AgentDefaults()
_LOGGING = LoggingSettings()
_PROVIDER = ProviderSettings(id="", api="openai-completions")

# OpenClaw's level names, mapped onto Python's.
_LOG_LEVELS = {
    "trace": "debug", "debug": "debug", "info": "info", "warn": "warning",
    "warning": "warning", "error": "error", "fatal": "critical", "silent": "critical",
}  # fmt: skip


def resolve_config_path(cli_path: str | None, environ: Mapping[str, str]) -> Path:
    if cli_path:
        return Path(cli_path).expanduser()
    if environ.get("OPENCLAW_CONFIG_PATH"):
        return Path(environ["OPENCLAW_CONFIG_PATH"]).expanduser()
    return Path("~/.openclaw/openclaw.json").expanduser()


def resolve_state_dir(environ: Mapping[str, str]) -> Path:
    if environ.get("OPENCLAW_STATE_DIR"):
        return Path(environ["OPENCLAW_STATE_DIR"]).expanduser()
    return Path("~/.openclaw").expanduser()


def load_settings(
    cli_path: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Settings:
    """Read, validate and freeze the configuration. Raises ``ConfigError``."""
    env = os.environ if environ is None else environ
    path = resolve_config_path(cli_path, env)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if cli_path or env.get("OPENCLAW_CONFIG_PATH"):
            raise ConfigError(f"{path}: file not found") from None
        data: Any = {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    else:
        try:
            data = json5.loads(text) if text.strip() else {}
        except ValueError as exc:
            # json5 says "<string>:LINE message"; name the real file instead.
            raise ConfigError(f"{path}:{str(exc).removeprefix('<string>:')}") from None
    return parse_settings(data, source=str(path), environ=env, config_path=path, warn=warn)


def parse_settings(
    data: Any,
    *,
    source: str = "<config>",
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> Settings:
    """Validate an already-parsed config document. Raises ``ConfigError``."""
    env = os.environ if environ is None else environ
    reader = Reader(source, warn or (lambda msg: logger.warning("%s", msg)))
    root = reader.root(_substitute(data, "", source, env))
    providers = _providers(root.child("models").child("providers"))
    agents = _agents(root.child("agents"), providers)
    gateway = _gateway(root.child("gateway"), env)
    log = root.child("logging")
    log.allow("format", "level", "file", "consoleLevel", "consoleStyle", "redactSensitive")
    logging_settings = LoggingSettings(
        format=log.choice("format", ("text", "json"), _LOGGING.format),  # type: ignore[arg-type]
        level=_LOG_LEVELS[log.choice("level", tuple(_LOG_LEVELS), _LOGGING.level)],
    )
    root.allow("models", "agents", "gateway", "logging")
    models = root.child("models")
    models.allow("providers", "mode")
    # OpenClaw merges its built-in catalogue with these providers or replaces it; this gateway
    # has no catalogue, so both mean the same here: validated, then ignored.
    models.choice("mode", ("merge", "replace"), "merge")
    return Settings(
        gateway=gateway,
        providers=MappingProxyType(providers),
        agents=agents,
        logging=logging_settings,
        state_dir=resolve_state_dir(env),
        config_path=config_path,
    )


def _substitute(value: Any, path: str, source: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                where = path or "<root>"
                raise ConfigError(f"{source}: {where}: environment variable {name} is not set")
            return env[name]

        return _ENV_REF.sub(replace, value)
    if isinstance(value, dict):
        return {
            k: _substitute(v, f"{path}.{k}" if path else k, source, env) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", source, env) for i, v in enumerate(value)]
    return value


def _gateway(node: Reader, env: Mapping[str, str]) -> GatewaySettings:
    node.allow(
        "port", "bind", "customBindHost", "auth", "http", "ws", "shutdownGraceSeconds",
        "mode", "controlUi", "tailscale", "remote", "reload", "trustedProxies", "tls", "store",
    )  # fmt: skip
    port = node.integer("port", _GATEWAY.port, minimum=0, maximum=65535)
    bind = node.choice("bind", ("loopback", "lan", "custom", "auto", "tailnet"), _GATEWAY.bind)
    if bind in ("auto", "tailnet"):
        node.warn_key("bind", f'"{bind}" is not supported here; using "loopback"')
        bind = "loopback"
    custom_host = node.string("customBindHost", None)
    if bind == "custom" and not custom_host:
        node.fail("customBindHost", 'required when gateway.bind is "custom"')
    settings = GatewaySettings(
        port=port,
        bind=bind,  # type: ignore[arg-type]
        custom_bind_host=custom_host,
        auth=_auth(node.child("auth"), env),
        http=_http(node.child("http")),
        ws=WsSettings(
            detach_runs_on_close=node.child("ws").boolean(
                "detachRunsOnClose", _GATEWAY.ws.detach_runs_on_close
            ),
        ),
        store=_store(node.child("store"), env),
        shutdown_grace_seconds=node.number(
            "shutdownGraceSeconds", _GATEWAY.shutdown_grace_seconds, minimum=0
        ),
        trusted_proxies=_trusted_proxies(node),
    )
    node.child("ws").allow("detachRunsOnClose")
    node.child("store").allow("shared", "url")
    if settings.auth.mode == "none" and settings.bind_host not in _LOOPBACK_HOSTS:
        node.fail(
            "auth.mode", f'"none" is refused when binding beyond loopback ({settings.bind_host})'
        )
    return settings


def _trusted_proxies(node: Reader) -> tuple[ProxyNetwork, ...]:
    """``gateway.trustedProxies``: addresses or CIDR networks, parsed once here."""
    networks = []
    for i, entry in enumerate(node.string_list("trustedProxies")):
        try:
            networks.append(proxy_network(entry))
        except ValueError:
            node.fail(
                f"trustedProxies[{i}]", f"expected an IP address or CIDR network, got {entry!r}"
            )
    return tuple(networks)


def _store(node: Reader, env: Mapping[str, str]) -> StoreSettings:
    """``gateway.store``; ``GATEWAY_STORE_URL`` wins over ``url``. The URL is checked for its
    scheme only (libpq reads the rest) and never quoted back: it may hold a password."""
    url = env.get("GATEWAY_STORE_URL") or node.string("url", None) or None
    if url is not None and urlsplit(url).scheme not in ("postgresql", "postgres"):
        source = " (from GATEWAY_STORE_URL)" if env.get("GATEWAY_STORE_URL") else ""
        node.fail("url", f"expected a postgresql:// URL{source}")
    return StoreSettings(shared=node.boolean("shared", _GATEWAY.store.shared), url=url)


def _auth(node: Reader, env: Mapping[str, str]) -> AuthSettings:
    node.allow("mode", "token", "password", "rateLimit", "allowTailscale")
    token = node.string("token", None) or env.get("OPENCLAW_GATEWAY_TOKEN") or None
    password = node.string("password", None) or env.get("OPENCLAW_GATEWAY_PASSWORD") or None
    default_mode = "password" if password else "token"
    mode = node.choice("mode", ("token", "password", "none"), default_mode)
    rate_limit = None
    if node.has("rateLimit"):
        rl = node.child("rateLimit")
        rl.allow("maxAttempts", "windowMs", "lockoutMs", "exemptLoopback")
        rate_limit = RateLimitSettings(
            max_attempts=rl.integer("maxAttempts", _RATE_LIMIT.max_attempts, minimum=1),
            window_ms=rl.integer("windowMs", _RATE_LIMIT.window_ms, minimum=1),
            lockout_ms=rl.integer("lockoutMs", _RATE_LIMIT.lockout_ms, minimum=0),
            exempt_loopback=rl.boolean("exemptLoopback", _RATE_LIMIT.exempt_loopback),
        )
    if mode == "token" and not token:
        logger.warning(
            "gateway.auth.mode is token but no token is configured (gateway.auth.token or "
            "OPENCLAW_GATEWAY_TOKEN): every authenticated request will be refused"
        )
    if mode == "password" and not password:
        logger.warning(
            "gateway.auth.mode is password but no password is configured: every "
            "authenticated request will be refused"
        )
    return AuthSettings(
        mode=mode,  # type: ignore[arg-type]
        token=token,
        password=password,
        rate_limit=rate_limit,
    )


def _http(node: Reader) -> HttpSettings:
    node.allow(
        "endpoints", "heartbeatSeconds", "bodyTimeoutSeconds", "sendTimeoutSeconds", "cors",
        "metrics",
    )  # fmt: skip
    cors = node.child("cors")
    cors.allow("allowOrigins")
    metrics = node.child("metrics")
    metrics.allow("enabled", "auth")
    endpoints = node.child("endpoints")
    endpoints.allow("chatCompletions", "responses")
    chat = endpoints.child("chatCompletions")
    chat.allow("enabled", "maxBodyBytes")
    responses = endpoints.child("responses")
    responses.allow("enabled", "maxBodyBytes", "retentionDays")
    return HttpSettings(
        chat_completions=ChatCompletionsSettings(
            enabled=chat.boolean("enabled", _HTTP.chat_completions.enabled),
            max_body_bytes=chat.integer(
                "maxBodyBytes", _HTTP.chat_completions.max_body_bytes, minimum=1
            ),
        ),
        responses=ResponsesSettings(
            enabled=responses.boolean("enabled", _HTTP.responses.enabled),
            max_body_bytes=responses.integer(
                "maxBodyBytes", _HTTP.responses.max_body_bytes, minimum=1
            ),
            retention_days=responses.number(
                "retentionDays", _HTTP.responses.retention_days, minimum=0.001
            ),
        ),
        heartbeat_seconds=node.number("heartbeatSeconds", _HTTP.heartbeat_seconds, minimum=0.01),
        body_timeout_seconds=node.number(
            "bodyTimeoutSeconds", _HTTP.body_timeout_seconds, minimum=0.01
        ),
        send_timeout_seconds=node.number(
            "sendTimeoutSeconds", _HTTP.send_timeout_seconds, minimum=0.01
        ),
        cors_allow_origins=tuple(cors.string_list("allowOrigins")),
        metrics=MetricsSettings(
            enabled=metrics.boolean("enabled", _HTTP.metrics.enabled),
            auth=metrics.boolean("auth", _HTTP.metrics.auth),
        ),
    )


def _providers(node: Reader) -> dict[str, ProviderSettings]:
    echo = ProviderSettings(id="echo", api="echo", models=(ModelSettings(id="echo", name="Echo"),))
    providers: dict[str, ProviderSettings] = {"echo": echo}
    for provider_id in node.names():
        p = node.child(provider_id)
        if provider_id == "echo":
            p.fail("", 'the provider id "echo" is reserved for the built-in echo model')
        p.allow(
            "baseUrl", "apiKey", "api", "headers", "timeoutSeconds", "connectTimeoutSeconds",
            "firstByteTimeoutSeconds", "idleTimeoutSeconds", "models", "auth", "authHeader",
        )  # fmt: skip
        api = p.string("api", _PROVIDER.api)
        if api not in PROVIDER_APIS:
            p.fail(
                "api",
                f"provider {provider_id!r} uses the model API kind {api!r}, which this gateway "
                f"does not support (supported: {', '.join(PROVIDER_APIS)})",
            )
        base_url = p.string("baseUrl", None)
        if not base_url:
            p.fail("baseUrl", "required")
        if not base_url.startswith(("http://", "https://")):
            p.fail("baseUrl", f"expected an http:// or https:// URL, got {base_url!r}")
        models = []
        for m in p.items("models"):
            m.allow(
                "id", "name", "contextWindow", "maxTokens", "embedding", "reasoning", "input",
                "cost",
            )  # fmt: skip
            model_id = m.string("id", None)
            if not model_id:
                m.fail("id", "required")
            assert model_id is not None
            models.append(
                ModelSettings(
                    id=model_id,
                    name=m.string("name", None),
                    context_window=m.integer("contextWindow", None, minimum=1),
                    max_tokens=m.integer("maxTokens", None, minimum=1),
                    embedding=m.boolean("embedding", False),
                )
            )
        providers[provider_id] = ProviderSettings(
            id=provider_id,
            api=api,  # type: ignore[arg-type]
            base_url=base_url.rstrip("/"),
            api_key=p.string("apiKey", None),
            headers=MappingProxyType(p.string_map("headers")),
            timeout_seconds=p.number("timeoutSeconds", None, minimum=0.001),
            connect_timeout_seconds=p.number(
                "connectTimeoutSeconds", _PROVIDER.connect_timeout_seconds, minimum=0.001
            ),
            first_byte_timeout_seconds=p.number("firstByteTimeoutSeconds", None, minimum=0.001),
            idle_timeout_seconds=p.number("idleTimeoutSeconds", None, minimum=0.001),
            models=tuple(models),
        )
    return providers


def _model_choice(
    node: Reader, key: str, providers: Mapping[str, ProviderSettings]
) -> ModelChoice | None:
    if not node.has(key):
        return None
    value = node.raw(key)
    if isinstance(value, str):
        return ModelChoice(_model_ref(node, key, value, providers))
    sub = node.child(key)
    sub.allow("primary", "fallbacks")
    primary = sub.string("primary", None)
    if not primary:
        sub.fail("primary", "required")
    assert primary is not None
    fallbacks = tuple(
        _model_ref(sub, f"fallbacks[{i}]", ref, providers)
        for i, ref in enumerate(sub.string_list("fallbacks"))
    )
    return ModelChoice(_model_ref(sub, "primary", primary, providers), fallbacks)


def _model_ref(node: Reader, key: str, ref: str, providers: Mapping[str, ProviderSettings]) -> str:
    provider_id, sep, model = ref.partition("/")
    if not sep or not provider_id or not model:
        node.fail(key, f'expected "provider/model", got {ref!r}')
    if provider_id not in providers:
        known = ", ".join(sorted(providers))
        node.fail(key, f"unknown provider {provider_id!r} (configured: {known})")
    return ref


def _agents(node: Reader, providers: Mapping[str, ProviderSettings]) -> AgentsSettings:
    node.allow("defaults", "list")
    d = node.child("defaults")
    d.allow(
        "model", "maxConcurrent", "timeoutSeconds", "systemPrompt", "historyLimit",
        "workspace", "models", "thinkingDefault", "verboseDefault", "heartbeat", "sandbox",
        "contextTokens", "compaction", "subagents", "imageModel", "userTimezone",
    )  # fmt: skip
    defaults = AgentDefaults(
        model=_model_choice(d, "model", providers),
        max_concurrent=d.integer("maxConcurrent", _DEFAULTS.max_concurrent, minimum=1),
        timeout_seconds=d.number("timeoutSeconds", _DEFAULTS.timeout_seconds, minimum=0.001),
        system_prompt=d.string("systemPrompt", None),
        history_limit=d.integer("historyLimit", None, minimum=1),
    )
    agents: list[AgentSettings] = []
    default_id: str | None = None
    for a in node.items("list"):
        a.allow(
            "id", "default", "name", "model", "systemPrompt", "workspace", "agentDir",
            "identity", "sandbox", "tools", "subagents", "heartbeat", "groupChat",
        )  # fmt: skip
        agent_id = a.string("id", None)
        if agent_id is None:
            a.fail("id", "required")
        if not _AGENT_ID.match(agent_id):
            a.fail("id", f"expected an id matching {AGENT_ID_PATTERN}, got {agent_id!r}")
        if any(x.id == agent_id for x in agents):
            a.fail("id", f"duplicate agent id {agent_id!r}")
        if a.boolean("default", False) and default_id is None:
            default_id = agent_id
        agents.append(
            AgentSettings(
                id=agent_id,
                name=a.string("name", None),
                model=_model_choice(a, "model", providers),
                system_prompt=a.string("systemPrompt", None),
            )
        )
    if not agents:
        return AgentsSettings(defaults=defaults)
    return AgentsSettings(
        defaults=defaults, agents=tuple(agents), default_id=default_id or agents[0].id
    )
