"""The WSGI entry point for gunicorn: `gunicorn app.wsgi:application`."""
from __future__ import annotations

import sys

from app import create_app
from app.config import ConfigError

try:
    application = create_app()
except ConfigError as exc:
    print(f"configuration error: {exc}", file=sys.stderr)
    sys.exit(2)
