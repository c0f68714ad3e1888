"""ASGI entry for ``uvicorn api.asgi:app`` (used by multi-worker ``ruis serve``)."""

from api.app import create_app

app = create_app()
