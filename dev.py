#!/usr/bin/env python3
"""Set up and run the store companion on this machine with nothing but Python 3.11+ and pip.

    python3 dev.py run     create .venv, install, migrate the database, start web + worker + clock
    python3 dev.py test    create .venv, install, run the whole test suite
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / ".requirements.sha256"


def ensure_environment() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text().strip() != wanted:
        print("installing requirements ...", flush=True)
        subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS)], check=True)
        STAMP.write_text(wanted)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run() -> int:
    env = environment()
    subprocess.run([str(PYTHON), "-m", "app", "db", "upgrade"], cwd=ROOT, env=env, check=True)
    return subprocess.call([str(BIN / "honcho"), "start", "web", "worker", "clock"], cwd=ROOT, env=env)


def test(extra: list[str]) -> int:
    # Two test processes by default (pytest-xdist): every test has its own database, ports and temp dirs.
    parallel = [] if any(arg == "-n" or arg.startswith("-n") for arg in extra) else ["-n", "2"]
    return subprocess.call([str(PYTHON), "-m", "pytest", *parallel, *extra], cwd=ROOT, env=environment())


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test"):
        print(__doc__)
        return 2
    ensure_environment()
    return run() if argv[0] == "run" else test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
