"""The ``http_sources`` config section: presets, overrides, and an error naming each bad key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config.http_paths import parse_path
from bridge.config.http_presets import PRESETS
from bridge.config.http_sources import MAX_PAGE_SIZE, parse_http_sources
from bridge.errors import ConfigError
from bridge.model import Status

URL = "https://deploys.example.com/v1/apps/42/deployments"


def entry(**overrides: Any) -> dict[str, Any]:
    """A valid entry on the spice preset, with ``overrides`` (None removes a key)."""
    data: dict[str, Any] = {
        "preset": "spice",
        "url": URL,
        "token_env": "SPICE_API_TOKEN",
        "repository": "acme/spice-app",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def test_no_section_is_no_sources() -> None:
    assert parse_http_sources(None) == {}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_with_url_token_and_repository_is_complete(preset: str) -> None:
    spec = parse_http_sources({"x": entry(preset=preset)})["x"]
    assert spec.preset == preset
    assert spec.url == URL
    assert spec.token_env == "SPICE_API_TOKEN"
    assert spec.repository == "acme/spice-app"
    assert {"id", "status", "finished_at"} <= {
        name for name, paths in vars(spec.fields).items() if paths
    }


def test_presets_name_every_status_of_their_platform() -> None:
    specs = parse_http_sources({name: entry(preset=name) for name in ("phased", "qoder", "spice")})
    # seed 002 lifecycle, seed 003 status filter, seed 004 Deployment.status enum
    assert dict(specs["phased"].status) == {
        "pending": Status.PENDING,
        "in_progress": Status.IN_PROGRESS,
        "completed": Status.SUCCEEDED,
        "failed": Status.FAILED,
        "cancelled": Status.CANCELLED,
    }
    assert set(specs["qoder"].status) == {"active", "paused"}
    assert dict(specs["spice"].status) == {
        "created": Status.PENDING,
        "queued": Status.PENDING,
        "in_progress": Status.IN_PROGRESS,
        "succeeded": Status.SUCCEEDED,
        "failed": Status.FAILED,
    }


def test_the_product_example_without_a_preset_parses() -> None:
    spec = parse_http_sources(
        {
            "spice": {
                "url": "https://api.spice.ai/v1/apps/42/deployments",
                "token_env": "SPICE_API_TOKEN",
                "pagination": {"style": "newest-first", "limit": 100},
                "items": "deployments",
                "fields": {
                    "id": "id",
                    "status": "status",
                    "sha": "commit_sha",
                    "finished_at": "updated_at",
                    "started_at": "started_at",
                    "deployer": "created_by",
                    "environment": None,
                },
                "status": {
                    "succeeded": "succeeded",
                    "failed": "failed",
                    "queued": "pending",
                    "created": "pending",
                    "in_progress": "in_progress",
                },
                "repository": "acme/spice-app",
            }
        }
    )["spice"]
    assert spec.pagination.style == "newest-first"
    assert spec.pagination.size == 100
    assert spec.fields.environment == ()
    assert spec.preset is None


def test_overrides_merge_into_the_preset_key_by_key() -> None:
    spec = parse_http_sources(
        {
            "s": entry(
                pagination={"limit": 250},
                fields={"sha": "image_tag", "environment": "branch"},
                status={"failed": "skip", "created": None, "Rolled_Back": "cancelled"},
                environment="production",
            )
        }
    )["s"]
    assert spec.pagination.style == "newest-first"
    assert spec.pagination.size == 250
    assert [p.text for p in spec.fields.sha] == ["image_tag"]
    assert [p.text for p in spec.fields.environment] == ["branch"]
    assert [p.text for p in spec.fields.deployer] == ["created_by"]  # kept from the preset
    assert spec.status["failed"] is None  # known, deliberately not recorded
    assert "created" not in spec.status  # removed: unmapped again
    assert spec.status["rolled_back"] is Status.CANCELLED  # words compare lower-cased
    assert spec.environment == "production"


def test_a_pagination_of_another_style_replaces_the_presets() -> None:
    spec = parse_http_sources(
        {"s": entry(pagination={"style": "page", "size": 50, "size_param": "per_page"})}
    )["s"]
    assert (spec.pagination.style, spec.pagination.size) == ("page", 50)
    assert (spec.pagination.page_param, spec.pagination.size_param) == ("page", "per_page")


def test_params_become_text_and_fallback_paths_keep_their_order() -> None:
    spec = parse_http_sources(
        {
            "p": entry(
                preset="phased",
                params={"productionAppId": 7, "verbose": False},
                fields={"finished_at": ["a.b", "phases[-1].completedAt"]},
            )
        }
    )["p"]
    assert dict(spec.params) == {"productionAppId": "7", "verbose": "false"}
    assert [p.text for p in spec.fields.finished_at] == ["a.b", "phases[-1].completedAt"]


def test_qoder_preset_asks_for_archived_deployments_too() -> None:
    spec = parse_http_sources({"q": entry(preset="qoder")})["q"]
    assert dict(spec.params) == {"include_archived": "true"}
    assert spec.pagination.newest_first_by is not None


@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        pytest.param({"GitHub": entry()}, "http_sources.GitHub", "lower-case", id="name-case"),
        pytest.param({"github": entry()}, "http_sources.github", "webhook", id="name-taken"),
        pytest.param({"s": "x"}, "http_sources.s", "mapping", id="entry-not-mapping"),
        pytest.param({"s": entry(url=None)}, "http_sources.s.url", "required", id="no-url"),
        pytest.param({"s": entry(url="ftp://x/y")}, "http_sources.s.url", "http(s)", id="bad-url"),
        pytest.param(
            {"s": entry(url=URL + "?app=1&api_key=abc")},
            "http_sources.s.url",
            "only from the environment",
            id="key-in-url",
        ),
        pytest.param(
            {"s": entry(url="https://me:abc@deploys.example.com/x")},
            "http_sources.s.url",
            "only from the environment",
            id="password-in-url",
        ),
        pytest.param(
            {"s": entry(token_env=None)}, "http_sources.s.token_env", "required", id="no-token-env"
        ),
        pytest.param(
            {"s": entry(token_env="MY TOKEN")},
            "http_sources.s.token_env",
            "environment variable",
            id="bad-token-env",
        ),
        *(
            pytest.param(
                {"s": entry(token_env=name)},
                "http_sources.s.token_env",
                "the bridge's own secret",
                id=f"own-secret-{name}",
            )
            for name in (
                "CORTEX_API_TOKEN",
                "BRIDGE_ADMIN_TOKEN",
                "GITHUB_WEBHOOK_SECRET",
                "GITHUB_TOKEN",
                "ARGOCD_AUTH_TOKEN_FILE",
                "BRIDGE_DATABASE_URL",
                "cortex_api_token",
                "Bridge_Admin_Token_file",
            )
        ),
        pytest.param(
            {"s": entry(token="abc")},
            "http_sources.s.token",
            "only from the environment",
            id="token-in-file",
        ),
        pytest.param(
            {"s": entry(api_key="abc")},
            "http_sources.s.api_key",
            "only from the environment",
            id="api-key-in-file",
        ),
        pytest.param(
            {"s": entry(repository=None)},
            "http_sources.s.repository",
            "required",
            id="no-repository",
        ),
        pytest.param(
            {"s": entry(preset="heroku")}, "http_sources.s.preset", "'spice'", id="bad-preset"
        ),
        pytest.param(
            {"s": entry(preset=None)}, "http_sources.s.pagination", "preset", id="no-pagination"
        ),
        pytest.param({"s": entry(colour="red")}, "http_sources.s.colour", "unknown", id="typo"),
        pytest.param(
            {"s": entry(pagination={"style": "offset"})},
            "http_sources.s.pagination.style",
            "'page' or 'cursor' or 'newest-first'",
            id="bad-style",
        ),
        pytest.param(
            {"s": entry(pagination={"limit": 0})},
            "http_sources.s.pagination.limit",
            f"1 to {MAX_PAGE_SIZE}",
            id="limit-zero",
        ),
        pytest.param(
            {"s": entry(pagination={"limit": MAX_PAGE_SIZE + 1})},
            "http_sources.s.pagination.limit",
            f"1 to {MAX_PAGE_SIZE}",
            id="limit-too-big",
        ),
        pytest.param(
            {"s": entry(pagination={"limit": "10"})},
            "http_sources.s.pagination.limit",
            "integer",
            id="limit-text",
        ),
        pytest.param(
            {"s": entry(preset="phased", pagination={"max_pages": 0})},
            "http_sources.s.pagination.max_pages",
            "1 to",
            id="max-pages-zero",
        ),
        pytest.param(
            {"s": entry(pagination={"cursor_param": "after"})},
            "http_sources.s.pagination.cursor_param",
            "unknown key",
            id="key-of-another-style",
        ),
        pytest.param(
            {"s": entry(preset="phased", pagination={"size_param": "page"})},
            "http_sources.s.pagination",
            "must differ",
            id="same-param-twice",
        ),
        pytest.param(
            {"s": entry(preset="phased", pagination={"first_page": 2})},
            "http_sources.s.pagination.first_page",
            "0 or 1",
            id="first-page",
        ),
        pytest.param(
            {"s": entry(fields={"id": None})}, "http_sources.s.fields.id", "required", id="no-id"
        ),
        pytest.param(
            {"s": entry(fields={"sha": "commit..sha"})},
            "http_sources.s.fields.sha",
            "not a field path",
            id="bad-path",
        ),
        pytest.param(
            {"s": entry(fields={"title": ["a", "b[x]"]})},
            "http_sources.s.fields.title[1]",
            "not a field path",
            id="bad-fallback-path",
        ),
        pytest.param(
            {"s": entry(fields={"title": []})},
            "http_sources.s.fields.title",
            "at least one",
            id="empty-fallbacks",
        ),
        pytest.param(
            {"s": entry(fields={"commit": "sha"})},
            "http_sources.s.fields.commit",
            "unknown key",
            id="unknown-field",
        ),
        pytest.param(
            {"s": entry(status={"failed": "broken"})},
            "http_sources.s.status.failed",
            "'cancelled' or 'skip'",
            id="bad-status",
        ),
        pytest.param(
            {
                "s": entry(
                    status=dict.fromkeys(
                        ("created", "queued", "in_progress", "succeeded", "failed"), "skip"
                    )
                )
            },
            "http_sources.s.status",
            "at least one",
            id="all-skipped",
        ),
        pytest.param(
            {"s": entry(params={"limit": 5})},
            "http_sources.s.params.limit",
            "paging parameter",
            id="paging-param",
        ),
        pytest.param(
            {"s": entry(params={"access_token": "abc"})},
            "http_sources.s.params.access_token",
            "only from the environment",
            id="secret-param",
        ),
        pytest.param(
            {"s": entry(params={"app": [1]})},
            "http_sources.s.params.app",
            "string, a number",
            id="list-param",
        ),
        pytest.param(
            {"s": entry(timeout_seconds=0)},
            "http_sources.s.timeout_seconds",
            "positive",
            id="timeout",
        ),
        pytest.param(
            {"s": entry(environment="")}, "http_sources.s.environment", "empty", id="empty-env"
        ),
    ],
)
def test_bad_entries_name_the_key(raw: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_http_sources(raw)
    assert caught.value.key == key
    assert words in caught.value.reason
    assert "abc" not in str(caught.value)  # a secret put in the file is never echoed


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        pytest.param("a.b", {"a": {"b": 1}}, 1, id="dotted"),
        pytest.param("a.c", {"a": {"b": 1}}, None, id="missing"),
        pytest.param("a.b", {"a": [1]}, None, id="not-an-object"),
        pytest.param("l[0].x", {"l": [{"x": 1}, {"x": 2}]}, 1, id="index"),
        pytest.param("l[-1].x", {"l": [{"x": 1}, {"x": 2}]}, 2, id="from-the-end"),
        pytest.param("l[2]", {"l": [1, 2]}, None, id="past-the-end"),
        pytest.param(
            "phases[name=build].startedAt",
            {"phases": [{"name": "infra", "startedAt": 1}, {"name": "build", "startedAt": 2}]},
            2,
            id="look-up",
        ),
        pytest.param("l[n=3].v", {"l": [{"n": 3, "v": "x"}]}, "x", id="look-up-number"),
        pytest.param("l[n=4].v", {"l": [{"n": 3, "v": "x"}]}, None, id="look-up-no-match"),
        pytest.param("l[n=3]", {"l": {"n": 3}}, None, id="look-up-not-a-list"),
    ],
)
def test_paths_read_json_and_never_raise(text: str, data: Any, expected: Any) -> None:
    assert parse_path(text, "k").get(data) == expected


def test_every_example_in_the_docs_page_is_a_valid_entry() -> None:
    page = (Path(__file__).parent.parent / "docs" / "http-sources.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", page, flags=re.DOTALL)
    assert len(blocks) == 5
    names = set()
    for block in blocks:
        text = block if block.startswith("http_sources:") else "http_sources:\n" + block
        specs = parse_http_sources(yaml.safe_load(text)["http_sources"])
        names.update(specs)
    assert names == {"spice", "checkout", "agents", "releases"}
