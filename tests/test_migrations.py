"""The migrations build the schema the models describe, and undo it, on SQLite and PostgreSQL alike."""
from __future__ import annotations

from sqlalchemy import inspect

from app.db import make_engine
from app.migrate import current_revision, downgrade, head_revision, schema_differences, upgrade
from app.models import Base


def test_migrated_database_matches_the_models(database_url):
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == head_revision()
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_every_table_and_upgrade_rebuilds_them(database_url):
    engine = make_engine(database_url)
    try:
        downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert current_revision(engine) is None

        upgrade(engine)
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_every_shop_table_carries_shop_id_and_its_unique_keys_start_with_it():
    shop_scoped = [t for t in Base.metadata.sorted_tables if "shop_id" in t.columns and t.name != "jobs"]
    assert len(shop_scoped) >= 20
    for table in shop_scoped:
        assert not table.c.shop_id.nullable, table.name
        for constraint in table.constraints:
            if constraint.__class__.__name__ == "UniqueConstraint":
                assert constraint.columns.keys()[0] == "shop_id", f"{table.name}: {constraint.columns.keys()}"
