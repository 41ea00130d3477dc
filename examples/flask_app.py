"""Flask: better-auth mounted, and ``GET /api/tasks`` calling a downstream API via OBO.

Run against a real tenant (see ``common.ExampleConfig.from_env``)::

    flask --app "examples.flask_app:create_app()" run --port 8000
"""

from __future__ import annotations

from typing import Any

from better_auth import APIError
from better_auth.integrations.flask import BetterAuthFlask
from flask import Flask, jsonify

from examples.common import ExampleConfig, build_auth, call_downstream, error_response


def create_app(config: ExampleConfig | None = None) -> Flask:
    config = config or ExampleConfig.from_env()
    auth, obo = build_auth(config)
    integration = BetterAuthFlask(auth)
    # Flask is sync; better-auth runs on one event loop in a thread, owned by the
    # integration. The database engine and auth.http are bound to that loop, so OBO
    # calls must run there too (the integration has no public hook for it yet).
    run = integration._run
    run(auth.adapter.create_tables())  # type: ignore[attr-defined]

    app = Flask(__name__)
    app.register_blueprint(integration.blueprint)
    app.extensions["better_auth"] = integration

    @app.errorhandler(APIError)
    def obo_error(exc: APIError) -> Any:
        status, body, headers = error_response(exc)
        return jsonify(body), status, headers

    @app.get("/api/tasks")
    def tasks() -> Any:
        session = integration.require_session()
        return jsonify(run(call_downstream(auth, obo, config, session["user"]["id"])))

    return app
