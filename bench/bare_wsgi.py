"""The WSGI application the HTTP benchmarks serve with gunicorn: our app, plus a bare Flask endpoint beside it.

`/bench/bare` goes to a separate, empty Flask app whose one view answers BENCH_BARE_STATUS (200 unless set) with
no work (none of our request hooks, metrics or database); every other path goes to `create_app()`. Same server,
same worker processes, same run, so the bare figure is the ceiling the server and the load client allow.
Run as `gunicorn bench.bare_wsgi:application` from the project root, with the service's settings in the env.
"""
from __future__ import annotations

import os

from flask import Flask

from app import create_app

BARE_PATH = "/bench/bare"
BARE_STATUS = int(os.environ.get("BENCH_BARE_STATUS", "200"))

ours = create_app()
bare = Flask("bench_bare")


@bare.route(BARE_PATH, methods=["GET", "POST"])
def bare_ok():
    return "", BARE_STATUS


def application(environ, start_response):
    if environ.get("PATH_INFO") == BARE_PATH:
        return bare(environ, start_response)
    return ours(environ, start_response)
