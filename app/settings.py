"""Service settings: read once from the environment into one frozen struct.

One rule: nothing reads the environment anywhere else; tests build `Settings` themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

# The console's default map: OpenStreetMap's standard tiles, with the attribution they require.
OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = (
    '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors')


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    database_url: str
    admin_token: str | None = None
    fcm_endpoint: str | None = None
    firebase_project_id: str = "contexto-local"
    google_application_credentials: str | None = None
    h3_resolution: int = 11
    # Where worker processes share their base fence indexes (geo.index_share); None: each builds
    # and holds its own.
    index_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1_048_576
    pool_min_size: int = 2
    pool_max_size: int = 10
    # The dispatcher worker runs inside the server process unless turned off (a fleet may run
    # `python -m campaigns.dispatch` separately instead).
    run_dispatcher: bool = True
    model_path: str | None = None
    # `make run` without Firebase credentials: serve the FCM emulator in-process on this port
    # and send to it.
    embedded_emulator_port: int | None = None
    # The dispatcher: how long a claimed row stays a worker's without a renewal, and how a
    # refused push is retried (exponential steps from base to cap, at most max_attempts sends;
    # an exhausted FCM quota waits at least the floor).
    dispatch_lease_seconds: float = 20.0
    dispatch_backoff_base_seconds: float = 1.0
    dispatch_backoff_cap_seconds: float = 600.0
    dispatch_max_attempts: int = 8
    fcm_quota_retry_floor_seconds: float = 60.0
    # The next-place model is refitted from every stored visit this often (seconds).
    predict_refit_seconds: float = 3600.0
    # The purchase-intent model is refitted from the stored signals this often (seconds).
    intent_refit_seconds: float = 3600.0
    # The value matrix is refitted from the stored purchases this often (seconds), and soon
    # after each transactions import.
    value_refit_seconds: float = 3600.0
    # Per device and route (pings, signals): a burst, then a steady rate of batches.
    device_burst: float = 30.0
    device_batches_per_second: float = 0.5
    # Pings and signals are kept this many days (by their `ts`), then deleted by a background
    # pass every `retention_interval_seconds`, at most `retention_batch` rows per statement.
    retention_days: int = 30
    retention_interval_seconds: float = 3600.0
    retention_batch: int = 5000
    # A benchmark control, never for production: the ping path skips the context engine (no
    # signals query, no intent, no micromoment; moments carry no context, so every campaign
    # with an audience is suppressed), which is how `make bench` measures what the context
    # adds to the ping path. Off unless CONTEXTO_BENCH_SKIP_CONTEXT is set.
    bench_skip_context: bool = False
    # The console's map tiles: a Leaflet URL template (its host is the only other origin the
    # page may load images from); empty for no tiles (the fences show on a blank background).
    console_tile_url: str = OSM_TILES
    console_tile_attribution: str = OSM_ATTRIBUTION
    # A benchmark control, never for production: the ping path does not arbitrate (no evidence
    # read, no Thompson draw); among a moment's survivors the highest priority wins, ties going
    # to `decide._rank`, as before arbitration existed. This is how `make bench` measures what
    # choosing among candidates adds to the ping path. Off unless CONTEXTO_BENCH_SKIP_ARBITRATION
    # is set.
    bench_skip_arbitration: bool = False
    # The live feed (`GET /v1/live`): each watcher's queue holds this many events (beyond it the
    # newest are dropped and counted), and an idle stream gets a heartbeat comment this often.
    live_queue_events: int = 500
    live_heartbeat_seconds: float = 15.0
    # Webhooks (campaigns/webhooks/): the key that seals subscriptions' signing secrets (none:
    # webhooks cannot be created and no relay runs), the hosts allowed over http and on private
    # addresses, and how the relay sends: a timeout per attempt, a lease on claimed deliveries
    # (longer than the timeout), POSTs in flight per receiver, retries from base to cap with
    # jitter within the window, then dead letters.
    webhook_secret_key: str | None = None
    webhook_allow_hosts: tuple[str, ...] = ()
    webhook_timeout_seconds: float = 5.0
    webhook_lease_seconds: float = 30.0
    webhook_concurrency: int = 4
    webhook_backoff_base_seconds: float = 1.0
    webhook_backoff_cap_seconds: float = 3600.0
    webhook_retry_window_seconds: float = 86400.0

    def __post_init__(self) -> None:
        if not 0 <= self.h3_resolution <= 15:
            raise ValueError("H3_RESOLUTION must be within 0..15")
        if self.console_tile_url and not (
            self.console_tile_url.startswith(("https://", "http://"))
            and all(part in self.console_tile_url for part in ("{z}", "{x}", "{y}"))
        ):
            raise ValueError("CONSOLE_TILE_URL must be an http(s) URL template with {z}, {x} "
                             "and {y}, or empty for no tiles")
        if not 0 < self.port < 65536:
            raise ValueError("PORT must be within 1..65535")
        if self.retention_days < 1:
            raise ValueError("RETENTION_DAYS must be at least 1")
        if not self.retention_interval_seconds > 0:
            raise ValueError("RETENTION_INTERVAL_SECONDS must be more than 0")
        if self.live_queue_events < 1 or self.live_heartbeat_seconds <= 0:
            raise ValueError("the live feed needs a queue of at least 1 event and a heartbeat")
        if self.retention_batch < 1:
            raise ValueError("the retention batch must be at least 1 row")
        if self.dispatch_lease_seconds <= 0:
            raise ValueError("DISPATCH_LEASE_SECONDS must be positive")
        if not 0 < self.dispatch_backoff_base_seconds <= self.dispatch_backoff_cap_seconds:
            raise ValueError("DISPATCH_BACKOFF_BASE_SECONDS must be positive and at most "
                             "DISPATCH_BACKOFF_CAP_SECONDS")
        if self.dispatch_max_attempts < 1:
            raise ValueError("DISPATCH_MAX_ATTEMPTS must be at least 1")
        if self.fcm_quota_retry_floor_seconds < 0:
            raise ValueError("FCM_QUOTA_RETRY_FLOOR_SECONDS must not be negative")
        if self.webhook_secret_key is not None and len(self.webhook_secret_key) < 32:
            raise ValueError("WEBHOOK_SECRET_KEY must be at least 32 characters")
        if not 0 < self.webhook_timeout_seconds < self.webhook_lease_seconds:
            raise ValueError("WEBHOOK_TIMEOUT_SECONDS must be positive and less than "
                             "WEBHOOK_LEASE_SECONDS")
        if self.webhook_concurrency < 1:
            raise ValueError("WEBHOOK_CONCURRENCY must be at least 1")
        if not 0 < self.webhook_backoff_base_seconds <= self.webhook_backoff_cap_seconds:
            raise ValueError("WEBHOOK_BACKOFF_BASE_SECONDS must be positive and at most "
                             "WEBHOOK_BACKOFF_CAP_SECONDS")
        if self.webhook_retry_window_seconds <= 0:
            raise ValueError("WEBHOOK_RETRY_WINDOW_SECONDS must be positive")


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def from_environment(env: Mapping[str, str], *, database_url: str,
                     admin_token: str | None) -> Settings:
    """Settings from `env`, with the database URL and admin token already resolved."""
    return Settings(
        database_url=database_url,
        admin_token=admin_token,
        fcm_endpoint=env.get("FCM_ENDPOINT") or None,
        firebase_project_id=env.get("FIREBASE_PROJECT_ID") or "contexto-local",
        google_application_credentials=env.get("GOOGLE_APPLICATION_CREDENTIALS") or None,
        h3_resolution=int(env.get("H3_RESOLUTION", "11")),
        index_dir=env.get("CONTEXTO_INDEX_DIR") or None,
        host=env.get("HOST", "127.0.0.1"),
        port=int(env.get("PORT", "8000")),
        max_body_bytes=int(env.get("MAX_BODY_BYTES", "1048576")),
        pool_min_size=int(env.get("DB_POOL_MIN", "2")),
        pool_max_size=int(env.get("DB_POOL_MAX", "10")),
        run_dispatcher=_flag(env.get("CONTEXTO_RUN_DISPATCHER", "1")),
        model_path=env.get("CONTEXTO_MODEL_PATH") or None,
        predict_refit_seconds=float(env.get("CONTEXTO_REFIT_SECONDS", "3600")),
        intent_refit_seconds=float(env.get("CONTEXTO_INTENT_REFIT_SECONDS", "3600")),
        value_refit_seconds=float(env.get("CONTEXTO_VALUE_REFIT_SECONDS", "3600")),
        dispatch_lease_seconds=float(env.get("DISPATCH_LEASE_SECONDS", "20")),
        dispatch_backoff_base_seconds=float(env.get("DISPATCH_BACKOFF_BASE_SECONDS", "1")),
        dispatch_backoff_cap_seconds=float(env.get("DISPATCH_BACKOFF_CAP_SECONDS", "600")),
        dispatch_max_attempts=int(env.get("DISPATCH_MAX_ATTEMPTS", "8")),
        fcm_quota_retry_floor_seconds=float(env.get("FCM_QUOTA_RETRY_FLOOR_SECONDS", "60")),
        device_burst=float(env.get("DEVICE_BURST", "30")),
        device_batches_per_second=float(env.get("DEVICE_BATCHES_PER_SECOND", "0.5")),
        retention_days=int(env.get("RETENTION_DAYS", "30")),
        retention_interval_seconds=float(env.get("RETENTION_INTERVAL_SECONDS", "3600")),
        bench_skip_context=_flag(env.get("CONTEXTO_BENCH_SKIP_CONTEXT", "0")),
        console_tile_url=env.get("CONSOLE_TILE_URL", OSM_TILES).strip(),
        console_tile_attribution=env.get("CONSOLE_TILE_ATTRIBUTION", OSM_ATTRIBUTION),
        bench_skip_arbitration=_flag(env.get("CONTEXTO_BENCH_SKIP_ARBITRATION", "0")),
        webhook_secret_key=env.get("WEBHOOK_SECRET_KEY") or None,
        webhook_allow_hosts=tuple(h.strip() for h in env.get("WEBHOOK_ALLOW_HOSTS", "").split(",")
                                  if h.strip()),
        webhook_timeout_seconds=float(env.get("WEBHOOK_TIMEOUT_SECONDS", "5")),
        webhook_lease_seconds=float(env.get("WEBHOOK_LEASE_SECONDS", "30")),
        webhook_concurrency=int(env.get("WEBHOOK_CONCURRENCY", "4")),
        webhook_backoff_base_seconds=float(env.get("WEBHOOK_BACKOFF_BASE_SECONDS", "1")),
        webhook_backoff_cap_seconds=float(env.get("WEBHOOK_BACKOFF_CAP_SECONDS", "3600")),
        webhook_retry_window_seconds=float(env.get("WEBHOOK_RETRY_WINDOW_SECONDS", "86400")),
        embedded_emulator_port=(
            int(env.get("FCM_EMULATOR_PORT", "8765"))
            if not env.get("FCM_ENDPOINT") and not env.get("GOOGLE_APPLICATION_CREDENTIALS")
            else None
        ),
    )


def environment() -> Mapping[str, str]:
    return os.environ
