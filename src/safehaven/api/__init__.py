"""The HTTP API (FastAPI): one router per role, all under ``/v1``."""
