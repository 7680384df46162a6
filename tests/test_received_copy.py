"""The copy of a webhook kept with its delivery masks the user and password of every URL in it,
exactly as one pattern over the whole body did, without trying that pattern at every letter.

The pattern ``(?i)([a-z][a-z0-9+.-]{0,31}://)[^/\\s"'@]+@`` starts with the scheme, so it was
tried at each letter of the body, 32 characters ahead each time: on the stored path, that one
search was the largest cost the round added (benchmarks/RESULTS.md, "Receiver tail").
``mask_userinfo`` finds the ``://`` and ``@`` first and looks for the scheme only there; here
its answers are compared with the pattern's on bodies made of the characters that matter.
"""

from __future__ import annotations

import json
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.ingest import MAX_RECEIVED_BYTES, received_copy
from bridge.redact import MASK, mask_userinfo
from tests.conftest import examples

# What received.py used before: the reference the new search must agree with.
PATTERN = re.compile(r"(?i)([a-z][a-z0-9+.-]{0,31}://)[^/\s\"'@]+@")


def by_pattern(text: str) -> str:
    return PATTERN.sub(lambda m: m.group(1) + MASK + "@", text)


# Letters, scheme characters, the separators, what ends a user and password, and letters that
# match [a-z] only without regard to case (the Kelvin sign, the long s, the dotless i).
PIECES = st.sampled_from(
    ["a", "Z", "k", "9", "+", ".", "-", ":", "/", "@", "://", " ", '"', "'", "\n", "\u00e9",
     "\u212a", "\u017f", "\u0131", "https", "x" * 31, "y" * 32, "_"]
)  # fmt: skip


@settings(max_examples=examples(3000))
@given(st.lists(PIECES, max_size=30).map("".join))
@example("https://bot:p4ss@git.example/x")
@example("a" * 31 + "://u@h")  # a 32-character scheme
@example("a" * 32 + "://u@h")  # 33: only its last 32 characters are the scheme
@example("9" * 40 + "://u@h")  # no letter to start a scheme
@example("http://a@b://c@d")  # one after another
@example("x://a@@://b@")
def test_masks_what_the_pattern_masked(text: str) -> None:
    assert mask_userinfo(text) == by_pattern(text)


def test_every_url_of_a_body_is_masked_and_the_rest_kept() -> None:
    body = json.dumps(
        {
            "clone": "https://bot:p4ss@git.example/x.git",
            "hook": "HTTP://user@hooks.example/",
            "plain": "https://git.example/x",
            "mail": "someone@example.com",
            "title": "deploy " + "a" * 100_000 + " done",
        }
    ).encode()
    kept = json.loads(received_copy({}, body, ()))["body"]
    assert "p4ss" not in kept
    assert "user@" not in kept
    assert "https://***@git.example/x.git" in kept
    assert "HTTP://***@hooks.example/" in kept
    assert "https://git.example/x" in kept
    assert "someone@example.com" in kept
    assert kept == by_pattern(body[:MAX_RECEIVED_BYTES].decode())


# Every ASCII character (controls, DEL, quotes, backslash) but "@" (no URL password to mask),
# Latin-1, U+2028, beyond the BMP.
TEXT = st.text(
    st.characters(max_codepoint=0x1F600, exclude_categories=("Cs",), exclude_characters="@"),
    max_size=40,
)


@settings(max_examples=examples(2000))
@given(TEXT, TEXT)
@example('plain ASCII, a quote " and a backslash \\', "GitHub-Hookshot/1")
@example("caf\u00e9 \u2028 \U0001f600", "")
@example("DEL \x7f, NUL \x00, ESC \x1b", "agent \x7f")
def test_the_copy_is_the_standard_librarys_json_text(body: str, agent: str) -> None:
    # orjson writes it when that gives the same bytes: the text kept never depends on which.
    raw = body.encode()
    environ = {"HTTP_USER_AGENT": agent, "HTTP_X_GITHUB_EVENT": "deployment_status"}
    headers = {
        name: value
        for name, value in (("User-Agent", agent), ("X-GitHub-Event", "deployment_status"))
        if value
    }
    expected = {"headers": headers, "body": body, "bytes": len(raw)}
    assert received_copy(environ, raw, ()) == json.dumps(expected, separators=(",", ":"))
