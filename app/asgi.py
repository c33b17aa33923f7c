"""The app for a worker process started by uvicorn (`CONTEXTO_WORKERS` > 1): the parent has
already resolved the database and the admin token into the environment."""

from __future__ import annotations

import os

from litestar import Litestar

from app.main import create_app
from app.settings import from_environment


def from_environment_app() -> Litestar:
    env = os.environ
    return create_app(from_environment(env, database_url=env["DATABASE_URL"],
                                       admin_token=env.get("CONTEXTO_ADMIN_TOKEN")))
