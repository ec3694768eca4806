"""What an operator sees: health, readiness, metrics, JSON errors, request ids, and the CLI."""
from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys

import pytest
from sqlalchemy import select

from app.config import PROJECT_ROOT
from app.jobs.executors.local import LocalWorker
from app.jobs.queue import enqueue
from app.models import Job, utcnow
from tests.factories import make_shop


def test_healthz_answers_without_touching_anything(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_reports_the_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ready", "checks": {"database": "ok"}}


def test_readyz_is_unavailable_when_the_configured_broker_does_not_answer(make_settings):
    from app import create_app

    app = create_app(make_settings(JOB_EXECUTOR="celery", CELERY_BROKER_URL="redis://127.0.0.1:1/0"))
    try:
        response = app.test_client().get("/readyz")
    finally:
        app.extensions["companion"].close()
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "ok"
    assert response.json["checks"]["broker"].startswith("error")


def test_metrics_show_jobs_by_state_latency_and_http_requests(app, client, tmp_path):
    runtime = app.extensions["companion"]
    with runtime.sessions.begin() as session:
        for _ in range(3):
            enqueue(session, "noop")
        enqueue(session, "test.flaky", path=str(tmp_path / "trace"), failures=5)
    LocalWorker(runtime).run(exit_when_idle=True)
    with runtime.sessions.begin() as session:  # due a minute ago, no worker running: the queue lags
        enqueue(session, "noop", due_at=utcnow() - dt.timedelta(seconds=60))
    client.get("/healthz")

    text = client.get("/metrics").get_data(as_text=True)
    assert 'companion_jobs{kind="noop",status="succeeded"} 3' in text
    assert 'companion_jobs{kind="test.flaky",status="queued"} 1' in text
    assert 'companion_job_latency_seconds_count{kind="noop"} 3' in text
    lag = float(re.search(r'companion_job_queue_lag_seconds\{kind="noop"\} ([\d.]+)', text).group(1))
    assert 60 <= lag < 600
    assert 'companion_job_runs_total{kind="test.flaky",outcome="retry"}' in text
    assert 'companion_http_requests_total{endpoint="/healthz",method="GET",status="200"}' in text


def test_unknown_url_gets_a_json_error_and_every_response_a_request_id(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
    assert len(response.headers["X-Request-Id"]) == 32
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"


def _cli(service_env, *args, **extra_env):
    import os

    env = {**os.environ, **service_env, **extra_env}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("variable,value,expected", [
    ("JOB_LEASE_SECONDS", "soon", "JOB_LEASE_SECONDS='soon' is not a whole number"),
    ("JOB_EXECUTOR", "rq", "JOB_EXECUTOR='rq' must be one of: local, celery"),
    ("DATABASE_URL", "mysql://db/x", "DATABASE_URL must be a sqlite:/// or postgresql:// URL"),
    ("FERNET_KEYS", "not-a-key", "FERNET_KEYS key #1 is not a valid Fernet key"),
])
def test_bad_configuration_stops_start_up_with_one_line_naming_the_variable(service_env, variable, value, expected):
    result = _cli(service_env, "jobs", "list", **{variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_production_refuses_to_start_without_its_own_keys(service_env):
    env = {k: v for k, v in service_env.items() if k not in ("FERNET_KEYS", "SECRET_KEY")}
    result = subprocess.run([sys.executable, "-m", "app", "jobs", "list"], cwd=PROJECT_ROOT,
                            env={"PATH": "/usr/bin:/bin", **env, "APP_ENV": "production"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "SECRET_KEY is required when APP_ENV=production" in result.stderr


def test_the_embedded_default_generates_its_keys_into_the_instance_folder_once(tmp_path):
    from app.config import Settings

    env = {"INSTANCE_DIR": str(tmp_path)}
    first, second = Settings.from_env(env), Settings.from_env(env)
    assert first.fernet_keys == second.fernet_keys and first.secret_key == second.secret_key
    assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0
    assert first.database_url == f"sqlite:///{tmp_path / 'companion.db'}"
    assert first.fernet_keys[0] not in repr(first) and first.secret_key not in repr(first)


def test_cli_lists_retries_and_cancels_jobs(runtime, service_env, tmp_path):
    with runtime.sessions.begin() as session:
        shop_id = make_shop(session).id
        dead = enqueue(session, "test.flaky", path=str(tmp_path / "trace"), failures=9, max_attempts=1, shop_id=shop_id)
        waiting = enqueue(session, "noop")
    LocalWorker(runtime).run(max_jobs=1, exit_when_idle=True)

    listing = _cli(service_env, "jobs", "list", "--status", "dead")
    assert f"{dead}" in listing.stdout and "test.flaky" in listing.stdout and "ConnectionError" in listing.stdout

    retried = _cli(service_env, "jobs", "retry", str(dead))
    cancelled = _cli(service_env, "jobs", "cancel", str(waiting), str(dead))
    assert retried.returncode == 0 and f"job {dead}: queued again" in retried.stdout
    assert cancelled.returncode == 0, cancelled.stdout
    with runtime.sessions() as session:
        statuses = dict(session.execute(select(Job.id, Job.status)).all())
    assert statuses == {dead: "cancelled", waiting: "cancelled"}

    refused = _cli(service_env, "jobs", "retry", str(waiting + 1000))
    assert refused.returncode == 1 and "not dead or cancelled" in refused.stdout


def test_cli_enqueue_names_the_bad_argument(service_env):
    result = _cli(service_env, "jobs", "enqueue", "noop", json.dumps({"shop": 1}))
    assert result.returncode == 1
    assert "unexpected keyword argument 'shop'" in result.stderr


def test_cli_lists_shops(runtime, service_env):
    with runtime.sessions.begin() as session:
        make_shop(session, "sklep-kwiaty.myshopify.com", timezone="Europe/Warsaw")
    result = _cli(service_env, "shops", "list")
    assert "sklep-kwiaty.myshopify.com" in result.stdout and "Europe/Warsaw" in result.stdout


def test_cli_rotates_keys(runtime, service_env):
    from cryptography.fernet import Fernet

    with runtime.sessions.begin() as session:
        make_shop(session, credentials={"access_token": "shpat_x"})
    new_key = Fernet.generate_key().decode()
    result = _cli(service_env, "keys", "rotate", FERNET_KEYS=f"{new_key},{service_env['FERNET_KEYS']}")
    assert "shops.credentials: 1 re-encrypted" in result.stdout
    assert _cli(service_env, "shops", "list", FERNET_KEYS=new_key).returncode == 0
