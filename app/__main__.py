"""`python -m app <command>`: the operator CLI, with configuration errors reported in one line."""
from __future__ import annotations

import sys

from flask.cli import FlaskGroup

from app.config import ConfigError


def _create_app():
    from app import create_app

    return create_app()


def main() -> None:
    cli = FlaskGroup(create_app=_create_app, add_default_commands=True, load_dotenv=True,
                     help="Store companion: operator commands.")
    try:
        cli.main(prog_name="python -m app", standalone_mode=True)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
