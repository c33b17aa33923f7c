"""`python -m app` (what `make run` runs): the service on the embedded defaults.

Without `DATABASE_URL` it starts a PostgreSQL from the `pgserver` package with its data under
`.contexto/pgdata` (kept across restarts); without `CONTEXTO_ADMIN_TOKEN` it generates an admin
token once and keeps it in `.contexto/admin_token`.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

import uvicorn

from app.main import create_app
from app.settings import environment, from_environment


def _admin_token(env: dict[str, str], state_dir: Path) -> str:
    token = env.get("CONTEXTO_ADMIN_TOKEN")
    if token:
        return token
    path = state_dir / "admin_token"
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    token = "ctxa_" + secrets.token_urlsafe(32)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


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
    settings = from_environment(env, database_url=database_url, admin_token=admin_token)
    url = f"http://{settings.host}:{settings.port}"
    print(f"contexto serving on {url}", flush=True)
    print(f"OpenAPI document:   {url}/schema/openapi.json", flush=True)
    print(f"admin token:        {admin_token}", flush=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level="info", access_log=False)


if __name__ == "__main__":
    main()
