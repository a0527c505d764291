"""Configuration from the environment and `.env`, one typed object per concern.

Choosing an engine is configuration: `stt_engine`/`tts_engine`/`agent_engine` are "auto" by default,
which picks the vendor when its key is set and the offline engine otherwise.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

EngineChoice = Literal["auto", "vendor", "offline"]


class InterruptionOptions(BaseModel):
    """Barge-in: caller speech while agent audio is still unplayed."""

    enabled: bool = True
    min_speech_ms: int = 200  # shorter bursts (clicks, echo, "uh") never interrupt
    vad_aggressiveness: int = 2  # webrtcvad 0..3
    confirm_with_transcript: bool = False  # also require an STT word before clearing
    # A clear with no words after it (a cough, noise, "mm-hm") is a false interruption: once the caller
    # has been quiet this long with no words heard, the reply resumes from the frame the caller last heard.
    resume_false_interruptions: bool = True
    false_interruption_quiet_ms: int = 400


class EndpointingOptions(BaseModel):
    """When a caller's turn is over."""

    stt_endpointing_ms: int = 300
    utterance_end_ms: int = 1000
    # Preemptive generation (streaming_service/preemptive_reply.py): once the caller has been quiet this
    # long with words heard, the agent starts on them; the final transcript commits or discards it. 60 ms is
    # over most gaps between words (20-40 ms): a longer gap inside a sentence costs a discarded draft (a model
    # request; about 1 a question, 0.4 at 120 ms), shown per turn as PreemptiveDraftsDiscarded.
    preemptive_generation: bool = True
    preemptive_after_silence_ms: int = 60


class SilenceOptions(BaseModel):
    """What happens when the caller says nothing after the agent finished."""

    reprompt_after_s: float = 8.0
    max_reprompts: int = 2  # then goodbye and hang up
    reprompt_text: str = "Are you still there?"
    # The agent is still thinking after this long: say a short line so the caller never hears dead air.
    thinking_filler_after_s: float = 1.5
    thinking_filler_text: str = "One moment, please."
    # A tool call or handoff starts before any word of the answer: this line (or the tenant's
    # `acknowledgement` setting) is said at once, from the phrase cache, unless the answer comes first.
    tool_acknowledgement_text: str = "Sure, one moment."
    tool_acknowledgement_after_ms: int = 100
    goodbye_text: str = "I haven't heard anything, so I'll end the call now. Goodbye!"


class StreamAdmissionOptions(BaseModel):
    """A Media Stream socket before its `start`: how long it may wait, and how many may wait per address."""

    start_timeout_s: float = 10.0  # counted from the upgrade, whatever frames arrive meanwhile
    max_pending_per_address: int = 16  # 0: no cap (the address is the ALB's X-Forwarded-For hop behind it)


class CapacityOptions(BaseModel):
    """Vendor budgets of the platform's own accounts (a tenant's own accounts carry theirs in its settings),
    the Redis leases that share them across tasks, and how a call waits for room. 0 = no limit."""

    deepgram_max_streams: int = 50  # Deepgram pay-as-you-go / Growth: 50 concurrent streams per project
    elevenlabs_max_concurrent_requests: int = 5  # ElevenLabs Creator: 5 (Free 2 ... Business 15)
    openai_max_requests_per_minute: int = 0
    lease_ttl_s: float = 60.0  # a crashed task's slots come back after at most this
    lease_renew_interval_s: float = 20.0
    vendor_ceiling_ttl_s: float = 20.0  # after a vendor 429, its account's budget is what we held, this long
    tts_slot_wait_ms: int = 600  # a sentence waits this long for a TTS slot, then the offline voice says it
    tts_first_byte_budget_ms: int = 1500  # `system_busy` retries (with jitter) must fit in this
    fleet_heartbeat_interval_s: float = 5.0
    fleet_heartbeat_ttl_s: float = 15.0  # a task silent this long is gone (crashed or stopped)
    # Offline recognisers (Deepgram's fallback, or the `offline` overflow policy) decoding at once in one
    # process. Each costs 0.11-0.15 of a core (bench/offline_stt_load.py); a worker at 50 vendor calls uses
    # ~0.6, so two more fit in its core and four do not. A call refused one is transferred or told to call back.
    offline_stt_max_streams: int = 2
    stream_retry_attempts: int = 2  # a refused stream is retried this often before the overflow policy
    # A short clip (about hold_pause_s long): the next try for room comes when it has played, so a full
    # music track would hold the caller for its whole length. Empty: a spoken "please hold" and a short pause.
    hold_music_url: str = ""
    hold_pause_s: int = 5


class DrainOptions(BaseModel):
    """SIGTERM behaviour: refuse new streams, let live calls finish."""

    drain_timeout_s: float = 120.0


class ObservabilityOptions(BaseModel):
    """Metrics (CloudWatch EMF on stdout) and traces (OTLP/HTTP to an ADOT collector, X-Ray ids)."""

    # "auto": EMF lines on stdout everywhere but `env=local` (where stdout is the demo's console).
    emf: Literal["auto", "on", "off"] = "auto"
    active_calls_interval_s: float = 10.0  # the autoscaling gauge's fixed cadence (never per change)
    service_name: str = "voice-agent-streaming"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", env_nested_delimiter="__", extra="ignore"
    )

    env: str = "local"
    port: int = 8080
    log_level: str = "INFO"
    public_url: str = Field(default="", validation_alias=AliasChoices("PUBLIC_URL", "NGROK_URL"))
    # The wss:// URL Twilio opens (and signs); behind an ALB it cannot be read off the request.
    stream_public_url: str = ""

    # Vendors: keys and base URLs (every vendor can be pointed at another host).
    deepgram_api_key: SecretStr | None = None
    deepgram_base_url: str = "wss://api.deepgram.com"
    deepgram_model: str = "nova-3"  # "flux-general-en": Deepgram Flux (/v2/listen), its own end-of-turn
    deepgram_language: str = ""  # e.g. "es", "multi"; empty: the model's default (English)
    elevenlabs_api_key: SecretStr | None = None
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    elevenlabs_model: str = "eleven_flash_v2_5"
    elevenlabs_voice_id: str = "21m00Tcm4TlvDq8ikWAM"
    # ISO 639-1 code sent as `language_code` (multilingual models); empty: the model decides.
    elevenlabs_language: str = ""
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4.1-mini"
    openai_timeout_s: float = 10.0
    # No first word from the model within this: the call switches to the offline policy.
    agent_first_event_timeout_s: float = 4.0

    stt_engine: EngineChoice = "auto"
    tts_engine: EngineChoice = "auto"
    agent_engine: EngineChoice = "auto"

    # Data
    redis_url: str = ""
    aurora_dsn: str = ""
    # In AWS the DSN is composed from the cluster secret's fields, injected by ECS/Lambda.
    db_host: str = ""
    db_port: int = 5432
    db_name: str = "voiceagent"
    db_user: str = ""
    db_password: SecretStr | None = None
    # In Lambda: the database (JSON: host, port, username, password, dbname) and Redis URL secrets.
    db_secret_arn: str = ""
    redis_url_secret_arn: str = ""
    # In Lambda: one Secrets Manager secret (JSON) holding the Twilio token, stream secret and vendor keys.
    app_secret_arn: str = ""
    mcp_base: str = ""
    cache_ttl_s: int = 900

    # Security
    twilio_auth_token: SecretStr | None = None
    stream_token_secret: SecretStr | None = None
    stream_token_ttl_s: int = 300
    # Data key(s) for tenants' own vendor keys (shared/tenancy/vendor_secrets.py): comma-separated, the first
    # encrypts. Unset: derived from STREAM_TOKEN_SECRET.
    tenant_secrets_key: SecretStr | None = None
    # Operational pages (/websocket-status, /websocket-metrics, the local /phone and /calls): a bearer token;
    # unset, they are served to direct loopback requests only (streaming_service/operator_access.py).
    operator_token: SecretStr | None = None
    # Local development only: accept unsigned upgrades and tokens. Logged loudly at start-up.
    insecure_skip_twilio_verification: bool = False

    # Tool proxy (MCP): its caller token secret is separate from the stream token's, since stream
    # tokens travel through Twilio.
    tool_proxy_secret: SecretStr | None = None
    tool_proxy_timeout_s: float = 5.0
    tool_proxy_max_response_bytes: int = 64 * 1024
    tool_proxy_allowed_networks: str = ""  # comma-separated CIDRs allowed despite the SSRF guard
    tool_proxy_allowed_hosts: str = ""  # extra Host headers the MCP endpoint answers (custom domains)

    # Limits
    max_ws_message_bytes: int = 64 * 1024
    # Admission cap of this task (0: none). When full, new streams are refused and /ready answers 503.
    # With WORKERS > 1 every worker admits against the whole task's calls (streaming_service/workers.py).
    max_calls_per_task: int = 0
    # Worker processes of `python -m streaming_service` behind one port (the supervisor hands each connection to
    # the worker with the fewest calls): one per vCPU in ECS
    # (infra sets it from the task size); 1, the default, keeps the single-process server.
    workers: int = 1
    # Set by ECS inside a task: the agent endpoint for scale-in protection (streaming_service/task_protection.py).
    ecs_agent_uri: str = ""

    interruption: InterruptionOptions = InterruptionOptions()
    endpointing: EndpointingOptions = EndpointingOptions()
    silence: SilenceOptions = SilenceOptions()
    drain: DrainOptions = DrainOptions()
    stream_admission: StreamAdmissionOptions = StreamAdmissionOptions()
    capacity: CapacityOptions = CapacityOptions()
    observability: ObservabilityOptions = ObservabilityOptions()
    # OpenTelemetry's own variable: the ADOT collector sidecar (OTLP/HTTP, e.g. http://127.0.0.1:4318).
    # Empty: tracing is off (no collector locally), and nothing is exported.
    otel_exporter_otlp_endpoint: str = ""

    default_greeting: str = "Hello! Thanks for calling. How can I help you today?"

    def database_dsn(self) -> str:
        if self.aurora_dsn or not self.db_host:
            return self.aurora_dsn
        password = self.db_password.get_secret_value() if self.db_password else ""
        from urllib.parse import quote

        return (f"postgresql://{quote(self.db_user)}:{quote(password)}@{self.db_host}:{self.db_port}/"
                f"{self.db_name}?sslmode=require")

    def secret(self, name: Literal["twilio_auth_token", "stream_token_secret", "tool_proxy_secret",
                                   "operator_token", "tenant_secrets_key"]) -> str:
        value: SecretStr | None = getattr(self, name)
        return value.get_secret_value() if value else ""

    def uses_vendor(self, choice: EngineChoice, key: SecretStr | None) -> bool:
        return choice == "vendor" or (choice == "auto" and key is not None and bool(key.get_secret_value()))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
