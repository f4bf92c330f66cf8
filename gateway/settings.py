"""Frozen, typed settings: what ``gateway.config`` produces and ``create_app`` consumes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from types import MappingProxyType
from typing import Literal

AuthMode = Literal["token", "password", "none"]
ProviderApi = Literal[
    "openai-completions",
    "openai-responses",
    "anthropic-messages",
    "google-generative-ai",
    "ollama",
    "echo",
]
BindMode = Literal["loopback", "lan", "custom"]

DEFAULT_PORT = 18789
ECHO_MODEL = "echo/echo"
AGENT_ID_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    max_attempts: int = 10
    window_ms: int = 60_000
    lockout_ms: int = 300_000
    exempt_loopback: bool = True


@dataclass(frozen=True, slots=True)
class AuthSettings:
    mode: AuthMode = "token"
    token: str | None = None
    password: str | None = None
    rate_limit: RateLimitSettings | None = None

    @property
    def secret(self) -> str | None:
        """The secret a client must present in the active mode (``None``: nobody gets in)."""
        if self.mode == "token":
            return self.token
        if self.mode == "password":
            return self.password
        return None


@dataclass(frozen=True, slots=True)
class ChatCompletionsSettings:
    enabled: bool = False
    max_body_bytes: int = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ResponsesSettings:
    enabled: bool = False
    max_body_bytes: int = 20 * 1024 * 1024
    retention_days: float = 30.0


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    enabled: bool = False
    auth: bool = False


@dataclass(frozen=True, slots=True)
class HttpSettings:
    chat_completions: ChatCompletionsSettings = ChatCompletionsSettings()
    responses: ResponsesSettings = ResponsesSettings()
    heartbeat_seconds: float = 15.0
    body_timeout_seconds: float = 60.0
    send_timeout_seconds: float = 30.0
    cors_allow_origins: tuple[str, ...] = ()
    metrics: MetricsSettings = MetricsSettings()


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    format: Literal["text", "json"] = "text"
    level: str = "info"


@dataclass(frozen=True, slots=True)
class WsSettings:
    detach_runs_on_close: bool = False


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Where sessions live. ``shared``: several independently started gateway processes serve
    this state directory (the workers of one ``gateway serve --workers N`` or
    ``hypercorn -w N`` are known to share it without this). ``url``: a PostgreSQL database
    instead of the state directory (never printed: it may hold a password)."""

    shared: bool = False
    # A PostgreSQL URL: sessions, stored responses and admission shared by several hosts.
    url: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    port: int = DEFAULT_PORT
    bind: BindMode = "loopback"
    custom_bind_host: str | None = None
    auth: AuthSettings = AuthSettings()
    http: HttpSettings = HttpSettings()
    ws: WsSettings = WsSettings()
    store: StoreSettings = StoreSettings()
    shutdown_grace_seconds: float = 3.0
    # The proxies whose forwarding headers name the client (see ``gateway.client_address``).
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()

    @property
    def bind_host(self) -> str:
        if self.bind == "lan":
            return "0.0.0.0"
        if self.bind == "custom" and self.custom_bind_host:
            return self.custom_bind_host
        return "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """One entry of a provider's ``models``; ``embedding``: an embeddings model."""

    id: str
    name: str | None = None
    context_window: int | None = None
    max_tokens: int | None = None
    embedding: bool = False


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """One entry of ``models.providers``.

    Timeouts: ``connect_timeout_seconds`` bounds connecting, ``first_byte_timeout_seconds`` the
    wait for the first response byte, ``idle_timeout_seconds`` the silence between two chunks.
    The last two default to ``timeout_seconds`` and then to 120 s.
    """

    id: str
    api: ProviderApi
    base_url: str = ""
    api_key: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    timeout_seconds: float | None = None
    connect_timeout_seconds: float = 10.0
    first_byte_timeout_seconds: float | None = None
    idle_timeout_seconds: float | None = None
    models: tuple[ModelSettings, ...] = ()

    @property
    def first_byte_timeout(self) -> float:
        return self.first_byte_timeout_seconds or self.timeout_seconds or 120.0

    @property
    def idle_timeout(self) -> float:
        return self.idle_timeout_seconds or self.timeout_seconds or 120.0


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """``primary`` then ``fallbacks``, each a ``provider/model`` reference."""

    primary: str
    fallbacks: tuple[str, ...] = ()

    @property
    def chain(self) -> tuple[str, ...]:
        return (self.primary, *self.fallbacks)


@dataclass(frozen=True, slots=True)
class AgentSettings:
    id: str
    name: str | None = None
    model: ModelChoice | None = None
    system_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class AgentDefaults:
    model: ModelChoice | None = None
    max_concurrent: int = 4
    timeout_seconds: float = 600.0
    system_prompt: str | None = None
    history_limit: int | None = None


@dataclass(frozen=True, slots=True)
class AgentsSettings:
    defaults: AgentDefaults = AgentDefaults()
    agents: tuple[AgentSettings, ...] = (AgentSettings(id="main"),)
    default_id: str = "main"

    def get(self, agent_id: str) -> AgentSettings | None:
        for agent in self.agents:
            if agent.id == agent_id:
                return agent
        return None

    def model_for(self, agent: AgentSettings) -> ModelChoice:
        return agent.model or self.defaults.model or ModelChoice(ECHO_MODEL)

    def system_prompt_for(self, agent: AgentSettings) -> str | None:
        return agent.system_prompt or self.defaults.system_prompt


@dataclass(frozen=True, slots=True)
class Settings:
    gateway: GatewaySettings = GatewaySettings()
    providers: Mapping[str, ProviderSettings] = field(default_factory=lambda: MappingProxyType({}))
    agents: AgentsSettings = AgentsSettings()
    logging: LoggingSettings = LoggingSettings()
    state_dir: Path = field(default_factory=lambda: Path("~/.openclaw").expanduser())
    config_path: Path | None = None

    @property
    def gateway_dir(self) -> Path:
        """Where our own files live (never touching files other programs keep in the state dir)."""
        return self.state_dir / "gateway"
