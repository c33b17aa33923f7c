"""`python -m app` (what `make run` runs): the service on the embedded defaults.

Without `DATABASE_URL` it starts a PostgreSQL from the `pgserver` package with its data under
`.contexto/pgdata` (kept across restarts); without `CONTEXTO_ADMIN_TOKEN` it generates an admin
token once and keeps it in `.contexto/admin_token`; without `WEBHOOK_SECRET_KEY` it generates the
key that seals webhook secrets into `.contexto/webhook_secret_key`.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from app.main import create_app
from app.settings import environment, from_environment

# Longer than the idle expiry of common HTTP clients' connection pools (httpx: 5 s), so a client
# rarely reuses a connection at the very moment the server closes it.
KEEP_ALIVE_SECONDS = 75
# A stop waits this long for requests in flight, then closes what is left: the live feed's
# streams never end by themselves (the console reconnects to the next process).
GRACEFUL_SHUTDOWN_SECONDS = 10


def _kept_secret(env: dict[str, str], variable: str, path: Path, make: Callable[[], str]) -> str:
    """The environment's `variable`, else the secret kept at `path`, else a new one from `make`
    written there once (owner-only): what `make run` needs, generated on first use."""
    given = env.get(variable)
    if given:
        return given
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    made = make()
    path.write_text(made + "\n")
    path.chmod(0o600)
    return made


def _admin_token(env: dict[str, str], state_dir: Path) -> str:
    return _kept_secret(env, "CONTEXTO_ADMIN_TOKEN", state_dir / "admin_token",
                        lambda: "ctxa_" + secrets.token_urlsafe(32))


def _webhook_secret_key(env: dict[str, str], state_dir: Path) -> str:
    """The key sealing webhook secrets: WEBHOOK_SECRET_KEY, else one generated once into
    `.contexto/webhook_secret_key` (lose it, and the stored secrets cannot be opened)."""
    return _kept_secret(env, "WEBHOOK_SECRET_KEY", state_dir / "webhook_secret_key",
                        lambda: secrets.token_urlsafe(48))


def _embedded_database(state_dir: Path) -> tuple[str, Any]:
    import pgserver

    folder = (state_dir / "pgdata").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder, cleanup_mode="stop")  # type: ignore[attr-defined]
    return str(server.get_uri()), server


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    env = dict(environment())
    state_dir = Path(env.get("CONTEXTO_HOME", ".contexto"))
    keep_alive: list[Any] = []
    database_url = env.get("DATABASE_URL")
    if not database_url:
        database_url, server = _embedded_database(state_dir)
        keep_alive.append(server)
        print(f"embedded PostgreSQL: {database_url}", flush=True)
    admin_token = _admin_token(env, state_dir)
    env["WEBHOOK_SECRET_KEY"] = _webhook_secret_key(env, state_dir)
    settings = from_environment(env, database_url=database_url, admin_token=admin_token)
    url = f"http://{settings.host}:{settings.port}"
    workers = int(env.get("CONTEXTO_WORKERS", "1"))
    print(f"contexto serving on {url} ({workers} worker process{'es' if workers > 1 else ''})",
          flush=True)
    print(f"OpenAPI document:   {url}/schema/openapi.json", flush=True)
    print(f"admin token:        {admin_token}", flush=True)
    if workers <= 1:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                    log_level="info", access_log=False, timeout_keep_alive=KEEP_ALIVE_SECONDS,
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
        return
    # Several processes share the port; each holds its own replica of the catalog and its own
    # dispatcher (they share the outbox through SKIP LOCKED). The FCM emulator, if any, is one
    # process of its own, and the workers are told where everything is through the environment.
    child_env = {**env, "DATABASE_URL": database_url, "CONTEXTO_ADMIN_TOKEN": admin_token,
                 "WEBHOOK_SECRET_KEY": env["WEBHOOK_SECRET_KEY"]}
    # One fence index for all of them: the first to need a version builds it, the others map it.
    child_env.setdefault("CONTEXTO_INDEX_DIR", str(state_dir / "fence-index"))
    emulator = None
    if settings.embedded_emulator_port is not None:
        emulator = subprocess.Popen([sys.executable, "-m", "campaigns.fcm_emulator",
                                     "--host", "127.0.0.1",
                                     "--port", str(settings.embedded_emulator_port)])
        child_env["FCM_ENDPOINT"] = f"http://127.0.0.1:{settings.embedded_emulator_port}"
        print(f"FCM emulator:       {child_env['FCM_ENDPOINT']}", flush=True)
    os.environ.update(child_env)
    try:
        uvicorn.run("app.asgi:from_environment_app", factory=True, workers=workers,
                    host=settings.host, port=settings.port, log_level="info", access_log=False,
                    timeout_keep_alive=KEEP_ALIVE_SECONDS,
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
