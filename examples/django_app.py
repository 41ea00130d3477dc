"""Django (one file): better-auth mounted, and ``GET /api/tasks`` calling an API via OBO.

Run against a real tenant (see ``common.ExampleConfig.from_env``)::

    python -m examples.django_app runserver 8000
"""

from __future__ import annotations

import sys
from typing import Any

from better_auth import APIError
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import clear_url_caches, path

from examples.common import ExampleConfig, build_auth, call_downstream, error_response

urlpatterns: list[Any] = []
#: the better-auth integration once ``setup`` ran (its ``.auth`` is the BetterAuth)
integration: Any = None


def setup(config: ExampleConfig | None = None) -> None:
    """Configure Django for this one-file app and build its URL patterns."""
    import django
    from better_auth.integrations.django import BetterAuthDjango

    global integration

    config = config or ExampleConfig.from_env()
    if not settings.configured:
        settings.configure(
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["*"],
            SECRET_KEY=config.secret,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
        )
        django.setup()
    auth, obo = build_auth(config)
    integration = BetterAuthDjango(auth)
    # Django views here are sync; better-auth runs on the integration's event loop
    # (database engine and auth.http are bound to it), so OBO calls run there too.
    run = integration._run
    run(auth.adapter.create_tables())  # type: ignore[attr-defined]

    def tasks(request: HttpRequest) -> HttpResponse:
        session = integration.require_session(request)
        if isinstance(session, HttpResponse):
            return session
        try:
            body = run(call_downstream(auth, obo, config, session["user"]["id"]))
        except APIError as exc:
            status, error, headers = error_response(exc)
            return JsonResponse(error, status=status, headers=headers)
        return JsonResponse(body)

    urlpatterns[:] = [*integration.urls, path("api/tasks", tasks)]
    clear_url_caches()


if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    setup()
    execute_from_command_line(sys.argv)
