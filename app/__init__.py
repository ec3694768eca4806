"""The store companion service: `create_app()` builds the web application and its runtime."""
from __future__ import annotations

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from app.config import Settings
from app.jobs.catalog import load_job_kinds
from app.logs import configure_logging
from app.runtime import Runtime, build_runtime
from app.web.cookie_session import CookieSessions
from app.web.corked_answers import CorkedAnswers
from app.web.lean_routes import LeanRoutes
from app.web.request_tracking import REQUEST_ID_KEY, RequestTracking, TrackedRequest


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    load_job_kinds()
    runtime = build_runtime(settings)

    app = Flask(__name__, instance_path=str(settings.instance_dir))
    app.request_class = TrackedRequest
    app.config.update(SECRET_KEY=settings.secret_key, TESTING=settings.testing, MAX_CONTENT_LENGTH=2 * 1024 * 1024)
    app.extensions["companion"] = runtime
    app.session_interface = CookieSessions()
    from app.automations.api import automations_api
    from app.messaging.api import messaging_api
    from app.messaging.web import messaging_public
    from app.shopify.admin import shopify_admin
    from app.shopify.install import shopify_install
    from app.shipping.warehouse import warehouse
    from app.shopify.webhooks import add_shopify_webhooks
    from app.storefront import storefront
    from app.storefront.events_endpoint import add_storefront_events
    from app.storefront.guard import Gate
    from app.web.health import health
    from app.woocommerce.connect import woocommerce_connect
    from app.woocommerce.webhooks import woocommerce_webhooks

    app.register_blueprint(health)
    app.register_blueprint(messaging_public)
    app.register_blueprint(shopify_install)
    app.register_blueprint(shopify_admin)
    app.register_blueprint(woocommerce_connect)
    app.register_blueprint(woocommerce_webhooks)
    app.register_blueprint(storefront)
    app.register_blueprint(automations_api)
    app.register_blueprint(messaging_api)
    app.register_blueprint(warehouse)
    lean = LeanRoutes(app.wsgi_app, max_body_bytes=app.config["MAX_CONTENT_LENGTH"])
    add_shopify_webhooks(lean, runtime)
    app.extensions["storefront_gate"] = storefront_gate = Gate(runtime)
    add_storefront_events(lean, storefront_gate)
    app.wsgi_app = lean
    if settings.trusted_proxy_count:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Only this many proxies' X-Forwarded-For/-Proto entries are believed: a client cannot forge its address.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_count, x_proto=settings.trusted_proxy_count)
    app.wsgi_app = CorkedAnswers(RequestTracking(app.wsgi_app))
    _install_json_errors(app)
    _install_session_teardown(app)

    from app.cli import register_commands

    register_commands(app)
    return app


def runtime_of(app: Flask) -> Runtime:
    return app.extensions["companion"]


def _install_json_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return jsonify(error=exc.name.lower().replace(" ", "_"), message=exc.description), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        app.logger.exception("unhandled error")
        return jsonify(error="internal_error", message="the server failed; the request id is in X-Request-Id",
                       request_id=request.environ.get(REQUEST_ID_KEY)), 500


def _install_session_teardown(app: Flask) -> None:
    @app.teardown_appcontext
    def _close_session(_exc):
        session = g.pop("db", None)
        if session is not None:
            session.close()


def db():
    """The request's database session (opened on first use, closed at the end of the request)."""
    from flask import current_app

    if "db" not in g:
        g.db = runtime_of(current_app).sessions()
    return g.db
