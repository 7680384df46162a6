"""Webhook authenticity: GitHub's X-Hub-Signature-256 and GitLab's X-Gitlab-Token."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from bridge.errors import SignatureError
from bridge.webhooks import verify_github, verify_gitlab
from tests.conftest import SAMPLES

# The documented test vector: docs.github.com/en/webhooks/using-webhooks/
# validating-webhook-deliveries, "Testing the webhook payload validation".
DOC_SECRET = "It's a Secret to Everybody"
DOC_BODY = b"Hello, World!"
DOC_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

SECRET = "whsec-payments-api-7c1d"
GITLAB_TOKEN = "glwt-payments-api-91fe"


def sign(secret: str, body: bytes) -> str:
    """What GitHub puts in X-Hub-Signature-256 for this body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_documented_vector_verifies() -> None:
    verify_github(DOC_SECRET, DOC_BODY, DOC_SIGNATURE)


def test_signature_over_a_sample_body_verifies() -> None:
    body = (SAMPLES / "github" / "deployment_status.success.json").read_bytes()
    verify_github(SECRET, body, sign(SECRET, body))


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(f"  {DOC_SIGNATURE}\n", id="surrounding-space"),
        pytest.param(DOC_SIGNATURE.upper().replace("SHA256=", "sha256="), id="upper-case-hex"),
    ],
)
def test_harmless_header_variations_verify(header: str) -> None:
    verify_github(DOC_SECRET, DOC_BODY, header)


@pytest.mark.parametrize(
    ("secret", "body", "header", "message"),
    [
        pytest.param(DOC_SECRET, DOC_BODY, None, "missing X-Hub-Signature-256", id="no-header"),
        pytest.param(DOC_SECRET, DOC_BODY, "", "missing X-Hub-Signature-256", id="empty-header"),
        pytest.param(
            DOC_SECRET,
            DOC_BODY,
            "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6",
            "X-Hub-Signature-256 is not a sha256= signature",
            id="sha1-signature",
        ),
        pytest.param(
            DOC_SECRET,
            DOC_BODY,
            DOC_SIGNATURE.removeprefix("sha256="),
            "X-Hub-Signature-256 is not a sha256= signature",
            id="no-prefix",
        ),
        pytest.param(
            DOC_SECRET, b"Hello, World?", DOC_SIGNATURE, "signature does not match", id="other-body"
        ),
        pytest.param(
            "It's a Secret to Nobody",
            DOC_BODY,
            DOC_SIGNATURE,
            "signature does not match",
            id="other-secret",
        ),
        pytest.param(
            DOC_SECRET, DOC_BODY, DOC_SIGNATURE[:-2], "signature does not match", id="truncated"
        ),
        pytest.param(
            DOC_SECRET, DOC_BODY, "sha256=\u00e9\udcff", "signature does not match", id="non-ascii"
        ),
        pytest.param(
            "", DOC_BODY, sign("", DOC_BODY), "no webhook secret to verify against", id="no-secret"
        ),
    ],
)
def test_bad_github_signatures_are_refused(
    secret: str, body: bytes, header: str | None, message: str
) -> None:
    with pytest.raises(SignatureError) as caught:
        verify_github(secret, body, header)
    assert str(caught.value) == message
    assert not secret or secret not in str(caught.value)


def test_gitlab_token_verifies() -> None:
    verify_gitlab(GITLAB_TOKEN, GITLAB_TOKEN)


def test_gitlab_token_with_line_breaks_matches_what_gitlab_sends() -> None:
    # GitLab strips line breaks from the token before sending it.
    verify_gitlab(GITLAB_TOKEN + "\n", GITLAB_TOKEN)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        pytest.param(None, "missing X-Gitlab-Token", id="no-header"),
        pytest.param("", "missing X-Gitlab-Token", id="empty-header"),
        pytest.param("glwt-other-token", "X-Gitlab-Token does not match", id="other-token"),
        pytest.param(GITLAB_TOKEN[:-1], "X-Gitlab-Token does not match", id="prefix"),
        pytest.param(GITLAB_TOKEN + "x", "X-Gitlab-Token does not match", id="longer"),
        pytest.param("t\u00f6ken\udcff", "X-Gitlab-Token does not match", id="non-ascii"),
    ],
)
def test_bad_gitlab_tokens_are_refused(header: str | None, message: str) -> None:
    with pytest.raises(SignatureError) as caught:
        verify_gitlab(GITLAB_TOKEN, header)
    assert str(caught.value) == message
    assert GITLAB_TOKEN not in str(caught.value)


def test_gitlab_without_a_configured_token_refuses() -> None:
    with pytest.raises(SignatureError, match="no webhook token"):
        verify_gitlab("", "")
