"""Persistence adapter: SQLAlchemy 2 models, Alembic migrations, SQLite or PostgreSQL."""
