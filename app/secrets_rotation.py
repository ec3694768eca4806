"""Re-encrypt every encrypted column under the newest key, in batches, never holding plaintext longer than a row."""
from __future__ import annotations

from sqlalchemy import Engine, Text, literal, select, update

from app.crypto import EncryptedJSON, rotate_token
from app.models import Base


def encrypted_columns() -> list:
    return [column for table in Base.metadata.sorted_tables for column in table.columns if isinstance(column.type, EncryptedJSON)]


def rotate_all(engine: Engine, batch_size: int = 500) -> dict[str, int]:
    """Returns how many values of each `table.column` were re-encrypted."""
    counts: dict[str, int] = {}
    for column in encrypted_columns():
        table = column.table
        key = next(iter(table.primary_key.columns))
        stored = column.cast(Text())  # the token as stored, not decrypted by the column type
        rotated, last_key = 0, None
        while True:
            with engine.begin() as conn:
                query = select(key, stored).where(column.is_not(None)).order_by(key).limit(batch_size)
                if last_key is not None:
                    query = query.where(key > last_key)
                rows = conn.execute(query).all()
                for row_key, token in rows:
                    conn.execute(update(table).where(key == row_key).values({column.name: literal(rotate_token(token), Text())}))
            rotated += len(rows)
            if len(rows) < batch_size:
                break
            last_key = rows[-1][0]
        counts[f"{table.name}.{column.name}"] = rotated
    return counts
