"""Rules several faces share, each kept once: the psycopg URL, commit shas, a first line."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bridge.config import parse_config
from bridge.model import FULL_SHA, HEX_SHA, first_line
from bridge.store.engine import create_engine
from bridge.urls import psycopg_url
from tests.databases import NO_PG, PG_URL


@pytest.mark.parametrize(
    ("given", "wanted"),
    [
        pytest.param("postgresql://u@h/db", "postgresql+psycopg://u@h/db", id="postgresql"),
        pytest.param("postgres://u@h:5433/db", "postgresql+psycopg://u@h:5433/db", id="postgres"),
        pytest.param("postgresql+psycopg://h/db", "postgresql+psycopg://h/db", id="already"),
        pytest.param("postgresql+psycopg2://h/db", "postgresql+psycopg2://h/db", id="psycopg2"),
        pytest.param("sqlite:///b.db", "sqlite:///b.db", id="sqlite"),
    ],
)
def test_psycopg_url(given: str, wanted: str) -> None:
    assert psycopg_url(given) == wanted


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_the_config_and_the_store_read_postgresql_alike(scheme: str) -> None:
    url = f"{scheme}://bridge@db.internal:5432/bridge"
    config = parse_config({"database": url}, environ={})
    engine = create_engine(url)
    try:
        assert config.database == "postgresql+psycopg://bridge@db.internal:5432/bridge"
        assert engine.url.drivername == "postgresql+psycopg"
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason=NO_PG)
def test_a_plain_postgresql_url_connects_with_psycopg3() -> None:
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://", 1)
    engine = create_engine(plain)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("text", "short", "full"),
    [
        pytest.param("c0ffee1", True, False, id="abbreviated"),
        pytest.param("c0ffee", False, False, id="too-short"),
        pytest.param("a" * 40, True, True, id="sha1"),
        pytest.param("A" * 40, True, True, id="upper"),
        pytest.param("b" * 64, True, True, id="sha256"),
        pytest.param("b" * 41, True, False, id="between"),
        pytest.param("b" * 65, False, False, id="too-long"),
        pytest.param("g" * 40, False, False, id="not-hex"),
        pytest.param("--output=x", False, False, id="option-like"),
    ],
)
def test_commit_sha_patterns(text: str, short: bool, full: bool) -> None:
    assert bool(HEX_SHA.fullmatch(text)) is short
    assert bool(FULL_SHA.fullmatch(text)) is full


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        pytest.param("Fix it\n\nbody", "Fix it", id="subject"),
        pytest.param("\n  \n  Second  \nthird", "Second", id="leading-blank"),
        pytest.param("", "", id="empty"),
        pytest.param(None, "", id="none"),
    ],
)
def test_first_line(text: str | None, wanted: str) -> None:
    assert first_line(text) == wanted
