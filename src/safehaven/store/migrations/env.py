"""Alembic environment: run against the engine handed over by ``safehaven.store.db``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine

from safehaven.store.models import Base

config = context.config
engine: Engine | None = config.attributes.get("engine")
if engine is None:  # command-line alembic: take the URL from the environment
    from safehaven.store.db import make_engine, resolve_url

    engine = (
        make_engine(resolve_url())
        if config.get_main_option("sqlalchemy.url") is None
        else create_engine(str(config.get_main_option("sqlalchemy.url")))
    )

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
