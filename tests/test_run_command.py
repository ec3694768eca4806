"""The README's run command brings up web, worker and clock on a fresh instance folder with no configuration."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from app.config import PROJECT_ROOT
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def test_run_command_serves_and_works_jobs_on_the_embedded_default(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "FERNET_KEYS", "SECRET_KEY", "JOB_EXECUTOR")}
    env.update(INSTANCE_DIR=str(tmp_path / "instance"), PORT=str(port), WEB_CONCURRENCY="1")
    log = (tmp_path / "run.log").open("wb")
    service = subprocess.Popen([sys.executable, "dev.py", "run"], cwd=PROJECT_ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready = wait_until(lambda: _get(f"http://127.0.0.1:{port}/readyz"), timeout=120, message="web answers")
        assert ready == {"status": "ready", "checks": {"database": "ok"}}
        assert (tmp_path / "instance" / "companion.db").exists()
        assert (tmp_path / "instance" / "keys.json").exists()

        cli_env = {**env, "PATH": f"{PROJECT_ROOT / '.venv' / 'bin'}:{env['PATH']}"}
        queued = subprocess.run([sys.executable, "-m", "app", "jobs", "enqueue", "noop"], cwd=PROJECT_ROOT, env=cli_env,
                                capture_output=True, text=True, timeout=60)
        assert queued.returncode == 0, queued.stderr

        def noop_succeeded():
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            return 'companion_jobs{kind="noop",status="succeeded"} 1' in metrics

        wait_until(noop_succeeded, timeout=60, message="the worker ran the job")
        output = (tmp_path / "run.log").read_text(errors="replace")
        assert "clock is the leader" in output
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait()
