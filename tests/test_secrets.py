"""Shop credentials are unreadable at rest, survive key rotation, and never show in logs or reprs."""
from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from app import crypto
from app.crypto import Secret, SecretUnreadable
from app.logs import JsonFormatter, mask_secrets
from app.models import Shop
from app.secrets_rotation import rotate_all
from tests.conftest import FERNET_KEY
from tests.factories import make_shop

TOKEN = "shpat_0123456789abcdef0123456789abcdef"


@pytest.fixture
def shop_with_token(runtime):
    with runtime.sessions.begin() as session:
        shop = make_shop(session, credentials={"access_token": TOKEN, "refresh_token": "shprt_refresh-me"})
        return shop.id


def _stored(runtime, shop_id) -> str:
    with runtime.engine.connect() as conn:
        return conn.execute(text("SELECT credentials FROM shops WHERE id = :id"), {"id": shop_id}).scalar_one()


def test_stored_credentials_are_not_readable_as_plain_text(runtime, shop_with_token, database_url):
    assert TOKEN not in _stored(runtime, shop_with_token)
    if database_url.startswith("sqlite"):
        runtime.engine.dispose()
        database_file = database_url.split("///", 1)[1]
        raw = b"".join(open(path, "rb").read() for path in (database_file, database_file + "-wal") if _exists(path))
        assert TOKEN.encode() not in raw


def _exists(path: str) -> bool:
    import os

    return os.path.exists(path)


def test_credentials_read_back_as_a_secret_that_hides_itself(runtime, shop_with_token):
    with runtime.sessions() as session:
        shop = session.get(Shop, shop_with_token)
    assert shop.credentials.reveal()["access_token"] == TOKEN
    assert TOKEN not in repr(shop.credentials) and TOKEN not in str(shop.credentials)
    assert TOKEN not in repr(vars(shop))


def test_rotation_re_encrypts_under_the_new_key_and_the_old_key_can_then_be_retired(runtime, shop_with_token):
    new_key = Fernet.generate_key().decode()
    before = _stored(runtime, shop_with_token)

    crypto.configure_keys([new_key, FERNET_KEY])
    counts = rotate_all(runtime.engine)
    assert counts["shops.credentials"] == 1
    assert _stored(runtime, shop_with_token) != before

    crypto.configure_keys([new_key])
    with runtime.sessions() as session:
        assert session.get(Shop, shop_with_token).credentials.reveal()["access_token"] == TOKEN


def test_a_secret_under_an_unknown_key_fails_with_a_clear_error(runtime, shop_with_token):
    crypto.configure_keys([Fernet.generate_key().decode()])
    with runtime.sessions() as session, pytest.raises(SecretUnreadable, match="FERNET_KEYS"):
        session.scalars(select(Shop)).all()


@pytest.mark.parametrize("line", [
    f"calling shop with access_token={TOKEN}",
    f'{{"access_token": "{TOKEN}"}}',
    f"Authorization: Bearer {TOKEN}",
    f"broker redis://user:{TOKEN}@redis:6379/0",
])
def test_log_lines_mask_secrets(line):
    assert TOKEN not in mask_secrets(line)


def test_json_log_records_mask_secret_fields():
    record = logging.makeLogRecord({"msg": "token refreshed", "levelname": "INFO", "extra_field": None})
    record.refresh_token = TOKEN
    assert TOKEN not in JsonFormatter().format(record)
