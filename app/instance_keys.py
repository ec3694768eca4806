"""Keys for the embedded default: generated once into instance/, never committed."""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Callable

from cryptography.fernet import Fernet

KEYS_FILE = "keys.json"


def load_or_create_json(path: Path, create: Callable[[], dict]) -> dict:
    """The JSON file at `path`, written with `create()` (mode 0600) if it does not exist yet.

    Several processes (web, worker, clock) start together: each writes a draft and hard-links it into place;
    the first link wins and everyone reads what it wrote, so no process ever sees a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        draft = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(create(), handle)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    with path.open() as handle:
        return json.load(handle)


def load_or_create_instance_keys(instance_dir: Path) -> dict[str, str]:
    """Return the instance's secret and Fernet key, creating them on first run."""
    return load_or_create_json(instance_dir / KEYS_FILE, lambda: {
        "secret_key": secrets.token_urlsafe(48), "fernet_key": Fernet.generate_key().decode()})
