"""Keys for the embedded default: generated once into instance/, never committed."""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet

KEYS_FILE = "keys.json"


def load_or_create_instance_keys(instance_dir: Path) -> dict[str, str]:
    """Return the instance's secret and Fernet key, creating them atomically on first run.

    Several processes (web, worker, clock) start together; the first to link the file wins
    and the others read what it wrote.
    """
    instance_dir.mkdir(parents=True, exist_ok=True)
    path = instance_dir / KEYS_FILE
    if not path.exists():
        draft = instance_dir / f".{KEYS_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        payload = {"secret_key": secrets.token_urlsafe(48), "fernet_key": Fernet.generate_key().decode()}
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    with path.open() as handle:
        return json.load(handle)
