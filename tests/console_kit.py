"""Helpers for console tests: signing in through the form, reading its CSRF token."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

from tests.receiver_kit import ADMIN_TOKEN

ORIGIN = "http://localhost"
_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(page: bytes | str) -> str:
    """The CSRF token of the first form on a page."""
    text = page.decode() if isinstance(page, bytes) else page
    found = _CSRF.search(text)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: FlaskClient, token: str = ADMIN_TOKEN) -> Any:
    """Sign in through the form, as a browser does (Origin and CSRF token included)."""
    form = client.get("/console/sign-in")
    assert form.status_code == 200
    return client.post(
        "/console/sign-in",
        data={"token": token, "csrf": csrf_of(form.data)},
        headers={"Origin": ORIGIN},
    )


def page_csrf(client: FlaskClient, path: str = "/console/deliveries") -> str:
    """The CSRF token the signed-in session's pages carry."""
    page = client.get(path)
    assert page.status_code == 200, page.data[:300]
    return csrf_of(page.data)
