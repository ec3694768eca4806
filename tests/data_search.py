"""Search every table for a string: how the tests prove an erasure left nothing behind."""
from __future__ import annotations

import json

from sqlalchemy import select

from app.models import Base


def tables_mentioning(engine, *needles: str) -> dict[str, int]:
    """Rows per table in which any column (text, JSON, raw bytes) contains any of the needles, case-insensitively."""
    wanted = [n.lower() for n in needles if n]
    found: dict[str, int] = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(select(*[c.cast(c.type.impl) if hasattr(c.type, "impl") and c.type.__class__.__name__ == "EncryptedJSON" else c
                                             for c in table.columns])):
                text = " ".join(_as_text(value) for value in row).lower()
                if any(needle in text for needle in wanted):
                    found[table.name] = found.get(table.name, 0) + 1
    return found


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
