"""Schema migrations driven from the app: upgrade, downgrade, and a check that models match migrations."""
from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from app.config import PROJECT_ROOT
from app.models import Base

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def _config(connection=None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _with_sqlite_foreign_keys_off(engine: Engine, action) -> None:
    """Batch migrations on SQLite recreate tables; with foreign keys on, a DROP TABLE would cascade-delete children."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            action(connection)
            if engine.dialect.name == "sqlite":
                problems = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if problems:
                    raise RuntimeError(f"migration left broken foreign keys: {problems[:5]}")
            connection.commit()
        finally:
            if engine.dialect.name == "sqlite":
                connection.rollback()
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def upgrade(engine: Engine, revision: str = "head") -> None:
    _with_sqlite_foreign_keys_off(engine, lambda conn: command.upgrade(_config(conn), revision))


def downgrade(engine: Engine, revision: str) -> None:
    _with_sqlite_foreign_keys_off(engine, lambda conn: command.downgrade(_config(conn), revision))


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def schema_differences(engine: Engine) -> list:
    """What autogenerate would still write: empty when the models and the migrated schema agree."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "render_as_batch": True})
        return compare_metadata(context, Base.metadata)
