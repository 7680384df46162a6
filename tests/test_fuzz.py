"""Bad input on both webhook endpoints: never a 5xx, and nothing stored unless answered 202.

Hypothesis builds requests from what real senders and attackers get wrong: bytes that are
not JSON, JSON that is not an event, our own samples with fields broken or swapped, bodies
in UTF-16/UTF-32/latin-1, with a BOM, invalid UTF-8 or NUL bytes, JSON nested past any
parser's depth, bodies around the size limit; and headers with the wrong or no content type,
events, delivery ids and tokens of any text, signatures that are missing, malformed, made
with another key or over other bytes, and valid signatures over all of the above.

Bodies come framed by a Content-Length, by chunked transfer encoding (no length: the server
ends the stream), or under a Content-Length header that lies or is not a number. The admin
API gets ids of any text and any size, any ``status``, ``limit`` and ``after``, and any
``Authorization``: never a 5xx, always JSON, and the outbox neither grows nor shrinks.

Every request goes through the Flask test client to a receiver on a real SQLite file; after
each one the outbox must have grown by one row exactly when the answer was 202. The runs are
derandomized (same examples on every run, no example database). ``benchmarks/fuzz.py`` sends
10,000 requests built by the same strategies to ``cortex-deploy-bridge serve`` over real HTTP.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes, urlencode

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from bridge.app import Runtime
from tests.conftest import load_sample
from tests.databases import NO_PG, PG_URL, database_url
from tests.receiver_kit import (
    ADMIN_TOKEN,
    GITHUB_SECRET,
    GITLAB_TOKEN,
    client_for,
    make_runtime,
    runtime_on,
)

# Small enough that bodies on both sides of the limit are cheap to build.
MAX_BODY = 64 * 1024
FUZZ = settings(
    max_examples=600,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Our samples, each with the event header it is sent under.
GITHUB_SAMPLES = {
    "github/deployment_status.success.json": "deployment_status",
    "github/deployment_status.in_progress.json": "deployment_status",
    "github/deployment.created.json": "deployment",
    "github/workflow_run.completed.success.json": "workflow_run",
    "github/ping.json": "ping",
}
GITLAB_SAMPLES = {
    "gitlab/deployment.success.json": "Deployment Hook",
    "gitlab/deployment.running.json": "Deployment Hook",
    "gitlab/pipeline.success.json": "Pipeline Hook",
}
GITHUB_EVENTS = ("deployment_status", "deployment", "workflow_run", "ping", "push", "")
GITLAB_EVENTS = ("Deployment Hook", "Pipeline Hook", "Push Hook", "deployment", "")
ODD_CONTENT_TYPES = (
    "application/json; charset=utf-16",
    "APPLICATION/JSON",
    "application/vnd.github+json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "",
    ";;;",
    "json",
)
ODD_ENCODINGS = ("utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1")
BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80")


# --- strategies ---------------------------------------------------------------------------

# What a header value can carry through gunicorn: latin-1 text, tab, no other control
# character (gunicorn answers 400 itself to NUL, CR, LF, DEL, ...; see the NUL cases below).
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
    | st.just("\t"),
    max_size=80,
)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def mostly(usual: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` three times in four, else a draw from ``other`` (so deep paths get reached)."""
    return st.integers(0, 3).flatmap(lambda n: other if n == 0 else st.just(usual))


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside ``doc``."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated(draw: st.DrawFn, sample: str) -> Any:
    """``sample`` with up to four fields replaced by any JSON, or removed."""
    doc = copy.deepcopy(load_sample(sample))
    for _ in range(draw(st.integers(0, 4))):
        paths = list(_paths(doc))
        if not paths:
            break
        *parents, last = draw(st.sampled_from(paths))
        holder = doc
        for step in parents:
            holder = holder[step]
        if draw(st.booleans()) and isinstance(holder, dict):
            del holder[last]
        else:
            holder[last] = draw(json_values)
    return doc


@st.composite
def encoded(draw: st.DrawFn, doc: st.SearchStrategy[Any]) -> bytes:
    """A JSON document as UTF-8, or in an odd encoding, or broken at the byte level."""
    text = json.dumps(draw(doc), ensure_ascii=draw(st.booleans()))
    encoding = draw(mostly("utf-8", st.sampled_from(ODD_ENCODINGS)))
    body = text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")
    damage = draw(mostly("none", st.sampled_from(("nul", "invalid-utf8", "cut", "bom"))))
    at = draw(st.integers(0, len(body)))
    if damage == "nul":
        body = body[:at] + b"\x00" + body[at:]
    elif damage == "invalid-utf8":
        body = body[:at] + draw(st.sampled_from(BAD_UTF8)) + body[at:]
    elif damage == "cut":
        body = body[:at]
    elif damage == "bom":
        body = draw(st.sampled_from((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"))) + body
    return body


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """JSON nested deeper than any parser goes (or just short of it), closed or not."""
    depth = draw(st.sampled_from((10, 500, 990, 1000, 5000, 100_000)))
    opener, closer = draw(st.sampled_from(((b"[", b"]"), (b'{"a":', b"}"))))
    inner = b"1" if opener == b"[" else b"{}"
    closing = closer * depth if draw(st.booleans()) else b""
    return opener * depth + inner + closing


@st.composite
def sized(draw: st.DrawFn) -> bytes:
    """A JSON object right below, at, or above the size limit."""
    size = MAX_BODY + draw(st.sampled_from((-4096, -1, 0, 1, 4096, 10 * MAX_BODY)))
    return b'{"action":"created","x":"' + b"a" * max(size - 27, 0) + b'"}'


def form_encoded(body: bytes) -> bytes:
    """GitHub's form encoding of a body: ``payload=`` and the body, url-encoded."""
    return b"payload=" + quote_from_bytes(body).encode()


def bodies(sample: str) -> st.SearchStrategy[bytes]:
    """Every kind of body the fuzzer sends, most of them variations of ``sample``."""
    variations = encoded(mutated(sample))
    return st.one_of(
        variations,
        variations,
        variations,
        st.binary(max_size=512),
        encoded(json_values),
        nested(),
        sized(),
        variations.map(form_encoded),
    )


def sign(body: bytes, secret: str = GITHUB_SECRET) -> str:
    """X-Hub-Signature-256 of ``body`` with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_signatures(body: bytes) -> st.SearchStrategy[str | None]:
    """A valid signature most of the time; else missing, malformed, or over other bytes."""
    valid = sign(body)
    wrong = st.sampled_from(
        (
            valid.upper(),
            f"  {valid}  ",
            sign(body, "another-secret"),
            sign(body + b" "),
            "sha1=" + hashlib.sha1(body).hexdigest(),  # noqa: S324 (GitHub's old header)
            valid[:-1],
            "sha256=",
            None,
        )
    )
    return mostly(valid, wrong | header_text)


@dataclass(frozen=True)
class Request:
    """One fuzzed request: a webhook delivery (POST), or a call of the admin API."""

    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    # How the body is framed: its Content-Length (None), chunked, or under this
    # Content-Length header instead of the true one (which may lie, or not be a number).
    chunked: bool = False
    content_length: str | None = None

    @property
    def admin(self) -> bool:
        """True for a call of the admin API."""
        return self.path.startswith("/api/")


def _headers(**values: str | None) -> dict[str, str]:
    return {name.replace("_", "-"): value for name, value in values.items() if value is not None}


def content_types(body: bytes) -> st.SearchStrategy[str | None]:
    """The right content type for the body most of the time; else a wrong one, or none."""
    usual = (
        "application/x-www-form-urlencoded" if body.startswith(b"payload=") else "application/json"
    )
    return mostly(usual, st.sampled_from(ODD_CONTENT_TYPES) | st.none() | header_text)


def ids() -> st.SearchStrategy[str | None]:
    """A delivery id: a fresh uuid most of the time; else none, or any header text."""
    return st.integers(0, 3).flatmap(
        lambda n: st.uuids().map(str) if n else (st.none() | header_text)
    )


@st.composite
def github_requests(draw: st.DrawFn) -> Request:
    """A POST /webhooks/github with a fuzzed body and headers."""
    sample = draw(st.sampled_from(sorted(GITHUB_SAMPLES)))
    body = draw(bodies(sample))
    events = st.sampled_from(GITHUB_EVENTS) | st.none() | header_text
    headers = _headers(
        Content_Type=draw(content_types(body)),
        X_GitHub_Event=draw(mostly(GITHUB_SAMPLES[sample], events)),
        X_GitHub_Delivery=draw(ids()),
        X_GitHub_Hook_ID=draw(mostly("292430182", st.none() | header_text)),
        X_Hub_Signature_256=draw(github_signatures(body)),
    )
    return Request("/webhooks/github", body, headers)


@st.composite
def gitlab_requests(draw: st.DrawFn) -> Request:
    """A POST /webhooks/gitlab with a fuzzed body and headers."""
    sample = draw(st.sampled_from(sorted(GITLAB_SAMPLES)))
    body = draw(bodies(sample))
    events = st.sampled_from(GITLAB_EVENTS) | st.none() | header_text
    tokens = st.sampled_from((f"{GITLAB_TOKEN} ", GITLAB_TOKEN.upper(), "guess", "", None))
    headers = _headers(
        Content_Type=draw(content_types(body)),
        X_Gitlab_Event=draw(mostly(GITLAB_SAMPLES[sample], events)),
        X_Gitlab_Token=draw(mostly(GITLAB_TOKEN, tokens | header_text)),
        X_Gitlab_Event_UUID=draw(ids()),
        Idempotency_Key=draw(st.none() | ids()),
    )
    return Request("/webhooks/gitlab", body, headers)


@st.composite
def framed(draw: st.DrawFn, requests: st.SearchStrategy[Request]) -> Request:
    """A request whose body is framed by its length, chunked, or under a wrong length."""
    request = draw(requests)
    how = draw(mostly("length", st.sampled_from(("chunked", "wrong-length"))))
    if how == "chunked":
        return replace(request, chunked=True)
    if how == "wrong-length":
        size = len(request.body)
        lengths = st.sampled_from(
            ("-1", "abc", "", "1e3", " 5", "+5", "0x10", str(2**64), "9" * 40, "0")
        )
        shorter = st.integers(0, max(size - 1, 0)).map(str)
        longer = st.integers(size + 1, size + 4096).map(str)
        length = draw(st.one_of(lengths, shorter, longer, header_text))
        return replace(request, content_length=length)
    return request


def webhook_requests() -> st.SearchStrategy[Request]:
    """Fuzzed requests to either endpoint, framed in any way."""
    return framed(github_requests() | gitlab_requests())


def _odd_id() -> st.SearchStrategy[str]:
    """Delivery ids in a path: numbers of any size and sign, and any text."""
    numbers = st.integers(-(2**70), 2**70).map(str) | st.sampled_from(
        ("9223372036854775807", "9223372036854775808", "18446744073709551616", "0", "1", "-0")
    )
    return numbers | st.text(max_size=30) | st.just("9" * 5000)


def authorizations() -> st.SearchStrategy[str | None]:
    """The admin token most of the time; else none, a near miss, or any header text."""
    near = st.sampled_from(
        (
            "Bearer",
            "Bearer ",
            f"bearer {ADMIN_TOKEN}",
            ADMIN_TOKEN,
            f"Bearer {ADMIN_TOKEN} ",
            f"Bearer {ADMIN_TOKEN[:-1]}",
            f"Basic {ADMIN_TOKEN}",
        )
    )
    return mostly(f"Bearer {ADMIN_TOKEN}", st.none() | near | header_text)


@st.composite
def admin_requests(draw: st.DrawFn) -> Request:
    """A call of the admin API: a delivery by any id, its retry, or a page by any query."""
    kind = draw(st.sampled_from(("show", "retry", "list")))
    if kind == "list":
        values = st.none() | st.text(max_size=20) | st.integers(-(2**70), 2**70).map(str)
        query = {
            name: value
            for name in ("status", "limit", "after")
            if (value := draw(values)) is not None
        }
        path = "/api/deliveries" + (f"?{urlencode(query)}" if query else "")
    else:
        path = "/api/deliveries/" + quote(draw(_odd_id()), safe="")
        path += "/retry" if kind == "retry" else ""
    method = "POST" if kind == "retry" else "GET"
    if draw(st.integers(0, 9)) == 0:
        method = "POST" if method == "GET" else "GET"  # the wrong method: 405
    headers = _headers(Authorization=draw(authorizations()))
    return Request(path, b"", headers, method=method)


# --- the property -------------------------------------------------------------------------


def check_answer(
    status: int, answer: Any, stored_before: int, stored_after: int, *, admin: bool = False
) -> None:
    """The contract for any input: no 5xx, a JSON reason, stored exactly when 202.

    The admin API stores nothing, whatever it is asked; its errors carry a reason too.
    """
    assert status < 500, (status, answer)
    assert isinstance(answer, dict), answer
    if admin:
        assert status in (200, 401, 404, 405, 409) or status == 400, (status, answer)
        assert status == 200 or (isinstance(answer.get("reason"), str) and answer["reason"])
        assert stored_after == stored_before, (status, answer)
        return
    if status == 202:
        assert answer["status"] == "queued" and isinstance(answer["id"], int), answer
    elif status == 200 and answer.get("status") == "duplicate":
        assert isinstance(answer["id"], int), answer
    else:
        assert status == 200 or 400 <= status < 500, (status, answer)
        assert isinstance(answer.get("reason"), str) and answer["reason"], answer
    assert stored_after - stored_before == (1 if status == 202 else 0), (status, answer)


Receiver = tuple[FlaskClient, Runtime]


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    """One receiver on a real SQLite file for every example of a test (hypothesis reuses it)."""
    runtime = make_runtime(
        tmp_path_factory.mktemp("fuzz"),
        {
            "server": {"max_body_bytes": MAX_BODY},
            "workflows": [{"match": {"workflow": "Deploy*"}, "environment": "production"}],
        },
    )
    yield client_for(runtime), runtime
    runtime.store.close()


def send(client: FlaskClient, request: Request) -> Any:
    """The test client's response to ``request``, its body framed as the request says."""
    if request.chunked:
        # No Content-Length: the server (gunicorn, Werkzeug's) ends the stream and says so.
        return client.open(
            request.path,
            method=request.method,
            input_stream=io.BytesIO(request.body),
            headers={**request.headers, "Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
    overrides = {} if request.content_length is None else {"CONTENT_LENGTH": request.content_length}
    return client.open(
        request.path,
        method=request.method,
        data=request.body,
        headers=request.headers,
        environ_overrides=overrides,
    )


def exchange(receiver: Receiver, request: Request) -> tuple[int, Any]:
    """Send one request; check the contract; the status and the JSON answer."""
    client, runtime = receiver
    before = sum(runtime.store.counts().values())
    response = send(client, request)
    after = sum(runtime.store.counts().values())
    answer: Any = response.get_json(silent=True)
    check_answer(response.status_code, answer, before, after, admin=request.admin)
    if currently_in_test_context():
        event(f"{response.status_code} {answer.get('status')}")  # --hypothesis-show-statistics
    return response.status_code, answer


def _valid(sample: str, source: str) -> Request:
    """A well-formed, correctly signed delivery of one of our samples, with accents in it."""
    doc = load_sample(sample)
    if source == "github":
        doc["deployment"]["description"] = "Déployer à l'été"
    else:
        doc["commit_title"] = "Déployer à l'été"
    body = json.dumps(doc, ensure_ascii=False).encode()
    if source == "github":
        return Request(
            "/webhooks/github",
            body,
            {
                "Content-Type": "application/json",
                "X-GitHub-Event": "deployment_status",
                "X-GitHub-Delivery": "fuzz-explicit",
                "X-Hub-Signature-256": sign(body),
            },
        )
    return Request(
        "/webhooks/gitlab",
        body,
        {
            "Content-Type": "application/json",
            "X-Gitlab-Event": "Deployment Hook",
            "X-Gitlab-Token": GITLAB_TOKEN,
        },
    )


def _reencoded(request: Request, encoding: str, *, prefix: bytes = b"") -> Request:
    """``request`` with its body in another encoding, signed again, under a new delivery id."""
    body = prefix + request.body.decode().encode(encoding)
    headers = dict(request.headers)
    if "X-Hub-Signature-256" in headers:
        headers.update({"X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": encoding})
    else:
        headers["X-Gitlab-Event-UUID"] = encoding
    return Request(request.path, body, headers)


GITHUB_OK = _valid("github/deployment_status.success.json", "github")
GITLAB_OK = _valid("gitlab/deployment.success.json", "gitlab")


@FUZZ
@given(request=framed(github_requests()))
@example(request=_reencoded(GITHUB_OK, "utf-16"))
@example(request=_reencoded(GITHUB_OK, "utf-8", prefix=b"\xef\xbb\xbf"))
@example(request=_reencoded(GITHUB_OK, "latin-1"))
@example(
    request=Request(
        "/webhooks/github",
        b"\x00" * 64,
        {**GITHUB_OK.headers, "X-Hub-Signature-256": sign(b"\x00" * 64)},
    )
)
@example(
    request=Request(
        "/webhooks/github", GITHUB_OK.body, {**GITHUB_OK.headers, "X-GitHub-Delivery": "d" * 600}
    )
)
@example(
    request=Request(
        "/webhooks/github",
        GITHUB_OK.body,
        {**GITHUB_OK.headers, "X-GitHub-Delivery": ":" * 200, "X-GitHub-Hook-ID": "%" * 200},
    )
)  # found by hand: ids that fit their headers but not the outbox once escaped were a 500
def test_github_endpoint_never_fails_on_input(receiver: Receiver, request: Request) -> None:
    exchange(receiver, request)


@FUZZ
@given(request=framed(gitlab_requests()))
@example(request=_reencoded(GITLAB_OK, "utf-16-le"))
@example(request=_reencoded(GITLAB_OK, "utf-32"))
@example(
    request=Request(
        "/webhooks/gitlab", GITLAB_OK.body, {**GITLAB_OK.headers, "X-Gitlab-Token": "é"}
    )
)
def test_gitlab_endpoint_never_fails_on_input(receiver: Receiver, request: Request) -> None:
    exchange(receiver, request)


@FUZZ
@given(
    body=st.sampled_from(sorted(GITHUB_SAMPLES)).flatmap(bodies),
    name=st.sampled_from(GITHUB_EVENTS[:3]),
)
def test_valid_signature_over_garbage(receiver: Receiver, body: bytes, name: str) -> None:
    """Signed correctly but the body is anything: still never a 5xx, stored only on 202."""
    request = Request(
        "/webhooks/github",
        body,
        {
            "Content-Type": "application/json",
            "X-GitHub-Event": name,
            "X-Hub-Signature-256": sign(body),
        },
    )
    exchange(receiver, request)


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@FUZZ
@given(request=admin_requests())
@example(request=Request("/api/deliveries/9223372036854775808", b"", ADMIN, method="GET"))
@example(request=Request("/api/deliveries/-1/retry", b"", ADMIN, method="POST"))
@example(request=Request("/api/deliveries//retry", b"", ADMIN, method="GET"))  # no redirect
def test_admin_api_never_fails_on_input(receiver: Receiver, request: Request) -> None:
    # Some deliveries to find, retry and page through: stored by the examples above, or here.
    exchange(receiver, replace(GITHUB_OK, headers={**GITHUB_OK.headers, "X-GitHub-Delivery": "a"}))
    exchange(receiver, request)


@FUZZ
@given(body=st.sampled_from(sorted(GITHUB_SAMPLES)).flatmap(bodies))
def test_chunked_body_is_read_whole_or_refused(receiver: Receiver, body: bytes) -> None:
    """A signed body sent chunked is stored only when it was read whole: over the limit, 413."""
    request = Request(
        "/webhooks/github",
        body,
        {
            "Content-Type": "application/json",
            "X-GitHub-Event": "deployment_status",
            "X-Hub-Signature-256": sign(body),
        },
        chunked=True,
    )
    status, _ = exchange(receiver, request)
    if len(body) > MAX_BODY:
        assert status == 413


# Found by this suite: a NUL in a delivery-id header once reached the store (a 500).


@pytest.mark.parametrize(
    ("valid", "header"),
    [
        pytest.param(GITHUB_OK, "X-GitHub-Delivery", id="github-delivery"),
        pytest.param(GITHUB_OK, "X-GitHub-Hook-ID", id="github-hook-id"),
        pytest.param(GITLAB_OK, "X-Gitlab-Event-UUID", id="gitlab-event-uuid"),
        pytest.param(GITLAB_OK, "Idempotency-Key", id="gitlab-idempotency-key"),
    ],
)
def test_nul_in_a_delivery_id_is_not_a_5xx(receiver: Receiver, valid: Request, header: str) -> None:
    exchange(receiver, Request(valid.path, valid.body, {**valid.headers, header: "id\x00x"}))


# Found by this suite: a NUL in a repository or environment once reached PostgreSQL (a 503).


@pytest.fixture
def pg_receiver(tmp_path: Path) -> Iterator[Receiver]:
    """A receiver on a PostgreSQL schema of its own (dropped after)."""
    with database_url("postgresql", tmp_path) as url:
        runtime = runtime_on(url)
        try:
            yield client_for(runtime), runtime
        finally:
            runtime.store.close()


def _with(request: Request, path: tuple[str, ...], value: str) -> Request:
    """``request`` with one field of its body replaced (and signed again)."""
    doc = json.loads(request.body)
    holder = doc
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    body = json.dumps(doc).encode()
    headers = dict(request.headers)
    if "X-Hub-Signature-256" in headers:
        headers["X-Hub-Signature-256"] = sign(body)
    return Request(request.path, body, headers)


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason=NO_PG)
@pytest.mark.parametrize(
    ("valid", "path"),
    [
        pytest.param(GITHUB_OK, ("repository", "full_name"), id="github-repository"),
        pytest.param(GITHUB_OK, ("deployment", "environment"), id="github-environment"),
        pytest.param(GITLAB_OK, ("project", "path_with_namespace"), id="gitlab-project"),
    ],
)
def test_nul_in_a_deploy_field_on_postgres_is_not_a_5xx(
    pg_receiver: Receiver, valid: Request, path: tuple[str, ...]
) -> None:
    exchange(pg_receiver, _with(valid, path, "acme/pay\x00ments"))
