"""docs/limits.md is true: every row of its tables is a claim, and each claim is exercised here.

The doc is parsed: each table row must have its check below (a row added without one fails
here, naming it), and each check reads the bound from the row itself, so a number changed in
the doc and not in the code (or the other way round) fails too. The checks go through the
place that decides: the receiver for what a webhook is answered, the model's one validation
(``bounded``, which every face calls) for an event's fields, the config loader, the admin
API and the ``deliveries`` command. Other tests cover each bound in more depth; the doc
names them in brackets.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.config import parse_config
from bridge.config.environ import read_file_variable
from bridge.config.loading import load_config
from bridge.errors import BridgeError, ConfigError, MalformedEvent
from bridge.ingest import dedupe_key
from bridge.model import (
    MAX_EVENT_BYTES,
    MAX_KEY_BYTES,
    MAX_NAME,
    MAX_TITLE,
    MAX_URL,
    DeployEvent,
    DeployRef,
    Status,
    bounded,
    entity_problem,
)
from bridge.store import Store
from bridge.views import MAX_ID, MAX_PAGE, delivery_id
from tests.conftest import load_sample
from tests.receiver_kit import (
    ADMIN_TOKEN,
    GITLAB_TOKEN,
    client_for,
    github_post,
    make_runtime,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "limits.md"


@dataclass(frozen=True)
class Row:
    """One row of a table in docs/limits.md."""

    section: str
    cells: tuple[str, ...]

    @property
    def what(self) -> str:
        return self.cells[0]

    @property
    def bound(self) -> str:
        return self.cells[1]

    @property
    def answer(self) -> str:
        return self.cells[2] if len(self.cells) > 2 else ""

    def numbers(self) -> list[int]:
        """The numbers the bound states, in order (``2,048`` is 2048)."""
        return [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*\d|\d", self.bound)]

    def names(self) -> list[str]:
        """The names in backticks in the first cell (headers, keys, variables)."""
        return re.findall(r"`([^`]+)`", self.what)


def rows() -> list[Row]:
    """Every body row of every table, with the ``##`` section it is in."""
    found: list[Row] = []
    section = ""
    lines = DOC.read_text().splitlines()
    for n, line in enumerate(lines):
        if line.startswith("## "):
            section = line[3:].strip()
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        following = lines[n + 1] if n + 1 < len(lines) else ""
        if following.startswith("|") and set(following) <= set("|-: "):
            continue  # a header row
        cells = tuple(cell.strip() for cell in line.strip().strip("|").split("|"))
        found.append(Row(section, cells))
    return found


# --- helpers ---------------------------------------------------------------------------------


def status_doc(**changes: Any) -> dict[str, Any]:
    """The GitHub deployment_status sample with dotted-path (``a__b``) fields replaced."""
    doc = copy.deepcopy(load_sample("github/deployment_status.success.json"))
    doc["deployment"]["payload"] = {}
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = doc
        for key in parents:
            target = target[key]
        target[last] = value
    return doc


def event(**changes: Any) -> DeployEvent:
    fields: dict[str, Any] = {
        "source": "github",
        "repository": "acme/payments-api",
        "event": "deployment_status",
        "ref": DeployRef("deployment", "1"),
        "status": Status.SUCCEEDED,
        "timestamp": datetime(2026, 11, 1, tzinfo=timezone.utc),
        "title": "Ship it",
        "sha": "a" * 40,
        "environment": "production",
        "url": "https://github.com/acme/payments-api/actions/runs/1",
        "deployer_name": "mara",
        "deployer_email": "mara@acme.example",
    }
    fields.update(changes)
    return DeployEvent(**fields)


def refused(label: str, **changes: Any) -> None:
    with pytest.raises(MalformedEvent) as caught:
        bounded(event(**changes))
    assert label in str(caught.value)


def one_number(row: Row) -> int:
    """The bound of a row that states one ("UTF-8" and the like aside: the largest)."""
    numbers = [n for n in row.numbers() if n > 1]
    assert numbers, f"{row.what}: no bound in {row.bound!r}"
    return max(numbers)


# --- the checks, one per row -----------------------------------------------------------------
# Each takes the row and a fresh directory.


def body_size(row: Row, tmp: Path) -> None:
    default = row.numbers()[0]
    assert parse_config({}).server.max_body_bytes == default
    assert "`413`" in row.answer
    reason = re.findall(r'"([^"]+)"', row.answer)[0]
    limit = 4096
    client = client_for(make_runtime(tmp, {"server": {"max_body_bytes": limit}}))
    text = json.dumps(status_doc()).encode()

    def post(size: int) -> Any:
        body = text + b" " * (size - len(text))
        return client.post(
            "/webhooks/github",
            data=body,
            headers={"X-GitHub-Event": "ping", "Content-Type": "application/json"},
        )

    assert post(limit).status_code != 413
    answer = post(limit + 1)
    assert (answer.status_code, answer.json["reason"]) == (413, reason)


def delivery_headers(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert most == 200
    client = client_for(make_runtime(tmp))
    for header in row.names():
        for value, ok in (("d" * most, True), ("d" * (most + 1), False), ("a\x01b", False)):
            answer = _post_with(client, header, value)
            if ok:
                assert answer.status_code in (200, 202), (header, answer.json)
            else:
                assert answer.status_code == 400, (header, value)
                assert header in answer.json["reason"]


def _post_with(client: Any, header: str, value: str) -> Any:
    if header.startswith("X-GitHub"):
        return github_post(client, "ping", "ping", headers={header: value})
    body = json.dumps(load_sample("gitlab/deployment.success.json")).encode()
    headers = {
        "X-Gitlab-Event": "Deployment Hook",
        "X-Gitlab-Token": GITLAB_TOKEN,
        "X-Gitlab-Event-UUID": "uuid-1",
        "Content-Type": "application/json",
        header: value,
    }
    return client.post("/webhooks/gitlab", data=body, headers=headers)


def dedupe_key_length(row: Row, tmp: Path) -> None:
    most = one_number(row)
    # "github:" + hook + ":" + delivery, with each ":" escaped to three characters.
    hook = ":" * 100
    fits = ":" * ((most - len("github:") - 3 * len(hook) - 1) // 3)
    key = dedupe_key(
        "github", ("X-GitHub-Delivery", fits), scope=("X-GitHub-Hook-ID", hook), body=b""
    )
    assert len(key) == most
    with pytest.raises(MalformedEvent) as caught:
        dedupe_key(
            "github", ("X-GitHub-Delivery", fits + "d"), scope=("X-GitHub-Hook-ID", hook), body=b""
        )
    assert "X-GitHub-Hook-ID and X-GitHub-Delivery" in str(caught.value)
    client = client_for(make_runtime(tmp))
    answer = github_post(
        client, "ping", "ping", delivery=fits + "d", headers={"X-GitHub-Hook-ID": hook}
    )
    assert answer.status_code == 400
    assert "X-GitHub-Hook-ID and X-GitHub-Delivery" in answer.json["reason"]


# The field of DeployEvent each "Fields of an event" row names, and the label errors use.
FIELDS = {
    "repository": ("repository", "repository"),
    "environment": ("environment", "environment"),
    "the source's deploy id": ("ref", "deploy id"),
    "url": ("url", "url"),
}


def a_name(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert most == MAX_NAME if row.what != "url" else most == MAX_URL
    field, label = FIELDS[row.what.split(" (")[0]]
    assert label in row.answer or row.what.startswith("the source")

    def value(text: str) -> Any:
        return DeployRef("deployment", text) if field == "ref" else text

    prefix = "https://d.example/" if field == "url" else ""
    bounded(event(**{field: value(prefix + "x" * (most - len(prefix)))}))
    refused(label, **{field: value(prefix + "x" * (most + 1 - len(prefix)))})
    if "no control character" in row.bound:
        for control in ("\x00", "\t", "\n", "\x7f", "\x9b", "\u2028", "\u2029"):
            refused(label, **{field: value(prefix + "a" + control + "b")})
    if field == "repository":  # and the receiver answers 400 naming it, storing nothing
        runtime = make_runtime(tmp)
        doc = status_doc(repository__full_name="acme/" + "x" * most)
        answer = github_post(client_for(runtime), "deployment_status", doc)
        assert answer.status_code == 400 and "repository" in answer.json["reason"]
        assert sum(runtime.store.counts().values()) == 0


def sha(row: Row, tmp: Path) -> None:
    low, high = row.numbers()
    client = client_for(make_runtime(tmp))
    cases = [
        ("a" * low, 202),
        ("a" * high, 202),
        ("a" * (low - 1), 400),
        ("a" * (high + 1), 400),
        ("g" * 40, 400),
    ]
    for n, (value, status) in enumerate(cases):
        doc = status_doc(deployment__sha=value, deployment__id=7000 + n)
        answer = github_post(client, "deployment_status", doc)
        assert answer.status_code == status, (value, answer.json)
        if status == 400:
            assert "deployment.sha" in answer.json["reason"]  # the payload path


def delivery_id_row(row: Row, tmp: Path) -> None:
    assert "as its header" in row.bound
    client = client_for(make_runtime(tmp))
    assert github_post(client, "ping", "ping", delivery="d" * 201).status_code == 400


def deployer(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert most == MAX_NAME
    for field, label in (("deployer_name", "deployer name"), ("deployer_email", "deployer email")):
        assert f"`{label}`" in row.answer
        # "after mending": control characters become spaces before the length counts.
        mended = bounded(event(**{field: "\x1b" + "n" * most + "\x07"}))
        assert getattr(mended, field) == "n" * most
        refused(label, **{field: "n" * (most + 1)})


def title(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert most == MAX_TITLE
    assert row.answer == "never refused"
    assert bounded(event(title="T" * (most * 4))).title == "T" * most
    assert "first line" in row.bound
    assert bounded(event(title="Fix\x1b[0m it\x07\nbody\x00")).title == "Fix [0m it"


def whole_event(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert most == MAX_EVENT_BYTES
    refused("details.ref", details={"ref": "r" * most})
    bounded(event(details={"ref": "r" * (most // 2)}))


def idempotency_key(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert most == MAX_KEY_BYTES
    wide = "".join(chr(0x1F600 + n % 64) for n in range(MAX_NAME))
    runtime = make_runtime(tmp)
    doc = status_doc(repository__full_name="acme/" + wide[5:], deployment__environment=wide)
    answer = github_post(client_for(runtime), "deployment_status", doc)
    assert answer.status_code == 400
    assert f"bytes in UTF-8; at most {most}" in answer.json["reason"]
    assert sum(runtime.store.counts().values()) == 0


def entities_per_event(row: Row, tmp: Path) -> None:
    default = one_number(row)
    assert parse_config({}).server.max_entities_per_event == default
    config = {
        "routes": [{"match": {}, "entities": ["{repo}"], "payload_entities": ["*"]}],
        "server": {"max_entities_per_event": 2},
    }
    runtime = make_runtime(tmp, config)
    doc = status_doc(deployment__payload={"cortex": {"entities": ["a", "b", "c"]}})
    answer = github_post(client_for(runtime), "deployment_status", doc)
    assert answer.status_code == 400
    assert "server.max_entities_per_event (2)" in answer.json["reason"]
    assert "3 entities" in answer.json["reason"]


def route_entities(row: Row, tmp: Path) -> None:
    assert "`routes[i].entities`" in row.answer
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "routes": [{"match": {}, "entities": ["a", "b", "c"]}],
                "server": {"max_entities_per_event": 2},
            }
        )
    assert "routes[0].entities" in str(caught.value)
    parse_config(
        {"routes": [{"match": {}, "entities": ["a", "b"]}], "server": {"max_entities_per_event": 2}}
    )


def entity_tag(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert most == MAX_NAME
    assert entity_problem("e" * most) is None
    for bad in ("", " ", ".", "..", "e" * (most + 1), "a\x1bb", "a\u2028b"):
        assert entity_problem(bad) is not None, repr(bad)
    runtime = make_runtime(
        tmp, {"routes": [{"match": {}, "entities": ["{repo}"], "payload_entities": ["*"]}]}
    )
    doc = status_doc(deployment__payload={"cortex": {"entities": [".."]}})
    answer = github_post(client_for(runtime), "deployment_status", doc)
    assert answer.status_code == 400 and "entity" in answer.json["reason"]


def admin_ids(row: Row, tmp: Path) -> None:
    low, high = row.numbers()
    assert (low, high) == (1, MAX_ID)
    assert delivery_id(str(low)) == low and delivery_id(str(high)) == high
    client = client_for(make_runtime(tmp))
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for raw in ("0", "-1", str(high + 1), "abc", "1e3", "+1", "\u0661"):
        for method, path in (
            ("GET", f"/api/deliveries/{raw}"),
            ("POST", f"/api/deliveries/{raw}/retry"),
        ):
            answer = client.open(path, method=method, headers=auth)
            assert answer.status_code == 404, (raw, method)
            assert answer.json["reason"].startswith("no delivery")


def cli_ids(row: Row, tmp: Path) -> None:
    assert row.bound == "the same range"
    url = f"sqlite:///{tmp / 'bridge.db'}"
    Store.from_url(url).close()
    env = {"BRIDGE_DATABASE_URL": url}
    assert "one line naming `ID`, exit 2" in row.answer
    for argv in (["deliveries", "show", "0"], ["deliveries", "retry", str(MAX_ID + 1)]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as stopped:
            main(argv, env)
        assert stopped.value.code == 2
        [line] = err.getvalue().splitlines()
        assert "argument ID" in line


def page_limit(row: Row, tmp: Path) -> None:
    low, high = row.numbers()
    assert (low, high) == (1, MAX_PAGE)
    client = client_for(make_runtime(tmp))
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for limit, status in ((low, 200), (high, 200), (low - 1, 400), (high + 1, 400)):
        assert client.get(f"/api/deliveries?limit={limit}", headers=auth).status_code == status


def config_file(row: Row, tmp: Path) -> None:
    path = tmp / "bridge.yaml"
    for data in (b"routes: []\n\x00\n", b"routes: []\n\x07\n", b"\xff\xfe routes"):
        path.write_bytes(data)
        with pytest.raises(BridgeError) as caught:
            load_config(path, {})
        assert str(path) in str(caught.value)


def cortex_url(row: Row, tmp: Path) -> None:
    assert "no user info" in row.bound
    with pytest.raises(ConfigError) as caught:
        parse_config({"cortex": {"url": "https://api.getcortexapp.com@evil.example"}})
    assert "cortex.url" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config({}, environ={"CORTEX_API_URL": "https://user:pw@api.getcortexapp.com"})
    assert "CORTEX_API_URL" in str(caught.value) and "pw" not in str(caught.value)
    with pytest.raises(ConfigError):
        parse_config({"cortex": {"url": "ftp://api.getcortexapp.com"}})


def ports(row: Row, tmp: Path) -> None:
    low, high = row.numbers()
    for port, ok in ((low, True), (high, True), (low - 1, False), (high + 1, False)):
        for data in (
            {"cortex": {"url": f"https://cortex.example:{port}"}},
            {"database": f"postgresql+psycopg://bridge@db.example:{port}/bridge"},
        ):
            if ok:
                parse_config(data)
            else:
                with pytest.raises(ConfigError) as caught:
                    parse_config(data)
                assert next(iter(data)) in str(caught.value)


def file_variables(row: Row, tmp: Path) -> None:
    most = one_number(row)
    names = row.names()
    assert "CORTEX_API_TOKEN_FILE" in names and "BRIDGE_DATABASE_URL_FILE" in names
    path = tmp / "secret"
    path.write_bytes(b"s" * most)
    assert read_file_variable("CORTEX_API_TOKEN_FILE", str(path)) == "s" * most
    for data in (b"s" * (most + 1), b"\xff\xfe"):
        path.write_bytes(data)
        with pytest.raises(ConfigError) as caught:
            read_file_variable("CORTEX_API_TOKEN_FILE", str(path))
        said = str(caught.value)
        assert "CORTEX_API_TOKEN_FILE" in said and str(path) in said and "sss" not in said


def log_line_ids(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert row.answer == "cut there"
    handler = _Lines()
    logger = logging.getLogger("bridge.receiver")
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        client = client_for(make_runtime(tmp))
        github_post(client, "e" * (most + 50), "ping", delivery="d" * most, secret="wrong")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
    [record] = handler.records
    assert record.getMessage() == "webhook rejected"
    assert (record.__dict__["event"], record.__dict__["delivery_id"]) == ("e" * most, "d" * most)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# --- Reading SCMs and http sources -----------------------------------------------------------

SYNC = "Reading SCMs and http sources (`sync` and the reconcile)"
SCM = "https://scm.example"


def _fetcher() -> Any:
    from bridge.sync.fetch import Fetcher

    return Fetcher(SCM, {"Authorization": "Bearer t"})


def token_origin(row: Row, tmp: Path) -> None:
    from bridge.sync.fetch import ForeignUrl

    fetcher = _fetcher()
    assert fetcher.check(f"{SCM}:443/x?y", "a URL")
    for url in ("http://scm.example/x", "https://scm.example:8443/x", "https://evil.example/x"):
        with pytest.raises(ForeignUrl, match="nothing sent there"):
            fetcher.check(url, "a URL")


def next_links(row: Row, tmp: Path) -> None:
    import responses

    from bridge.sync.fetch import ForeignUrl
    from bridge.sync.github import github_client

    link = {"Link": '<https://evil.example/2>; rel="next"'}
    with responses.RequestsMock() as mock:
        mock.get(f"{SCM}/orgs/a/repos", json=[], headers=link)
        with pytest.raises(ForeignUrl, match=r"a next-page link leads to https://evil\.example/2"):
            list(github_client(SCM, "t").pages("/orgs/a/repos"))
        assert len(mock.calls) == 1


def redirects(row: Row, tmp: Path) -> None:
    from bridge.sync.fetch import MAX_REDIRECTS, REDIRECTS

    *statuses, most = row.numbers()
    assert (set(statuses), most) == (set(REDIRECTS), MAX_REDIRECTS)
    assert "never followed by the HTTP library" in row.bound


def saved_resume_point(row: Row, tmp: Path) -> None:
    import responses

    from bridge.sync.api import ScmError
    from bridge.sync.gitlab import GitLabReader, gitlab_client
    from bridge.sync.reader import Window

    reader = GitLabReader(gitlab_client(SCM, "t"), "acme/web", runs_are_deploys=False)
    point = json.dumps({"phase": "deployments", "url": "https://evil.example/api/v4/x"})
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with responses.RequestsMock() as mock:
        with pytest.raises(ScmError, match=r"saved resume point leads to .*--restart"):
            list(reader.read(Window(now, now), resume=point))
        assert not mock.calls


def scm_urls(row: Row, tmp: Path) -> None:
    from bridge.sync.targets import Targets, make_readers

    assert "no user info" in row.bound
    for variable, targets in (
        ("GITHUB_API_URL", Targets(github=("a/b",))),
        ("GITLAB_URL", Targets(gitlab=("a/b",))),
    ):
        environ = {
            variable: "https://scm.example@evil.example",
            "GITHUB_TOKEN": "t",
            "GITLAB_API_TOKEN": "t",
        }
        with pytest.raises(ConfigError, match=f"{variable}: must not hold a user"):
            make_readers(targets, parse_config({}), environ)


def answer_body(row: Row, tmp: Path) -> None:
    import responses

    from bridge.sync.fetch import MAX_BYTES, FetchError

    mib, most = row.numbers()[:2]
    assert most == mib * 1024 * 1024 == MAX_BYTES
    with responses.RequestsMock() as mock:
        mock.get(f"{SCM}/a", body=b"1" * most)
        mock.get(f"{SCM}/b", body=b"1" * (most + 1))
        assert len(_fetcher().send("GET", f"{SCM}/a").body) == most
        with pytest.raises(FetchError, match=f"larger than {most} bytes"):
            _fetcher().send("GET", f"{SCM}/b")


def json_shape(row: Row, tmp: Path) -> None:
    from requests.structures import CaseInsensitiveDict

    from bridge.sync.fetch import MAX_CONTAINERS, MAX_VALUES, Answer, FetchError

    containers, values = row.numbers()
    assert (containers, values) == (MAX_CONTAINERS, MAX_VALUES)

    def parse(body: bytes) -> Any:
        return Answer(200, CaseInsensitiveDict(), body, f"{SCM}/x").json()

    assert len(parse(b"[" + b"{}," * (containers - 2) + b"{}]")) == containers - 1
    for body in (b"[" + b"{}," * containers + b"{}]", b"[" + b"1," * (values + 1) + b"1]"):
        with pytest.raises(FetchError, match="more than"):
            parse(body)
    with pytest.raises(FetchError, match="not JSON"):
        parse(b"[" * 5000)


def answer_time(row: Row, tmp: Path) -> None:
    from bridge.sync import api, http_source
    from bridge.sync.fetch import ANSWER_SECONDS

    connect, read, whole, times = row.numbers()
    assert (connect, read) == api.TIMEOUT and connect == http_source.CONNECT_TIMEOUT
    assert whole == ANSWER_SECONDS and times == 4


def items_a_page(row: Row, tmp: Path) -> None:
    from bridge.config.http_sources import MAX_PAGE_SIZE
    from bridge.sync import github, gitlab
    from bridge.sync.api import ScmError
    from bridge.sync.found import json_list

    *asked, http = row.numbers()
    scm = github.PAGE
    assert set(asked) == {scm} and scm == gitlab.PAGE and http == MAX_PAGE_SIZE
    assert len(json_list([1] * scm, "/x", most=scm)) == scm
    with pytest.raises(ScmError, match=f"at most {scm} were asked for"):
        json_list([1] * (scm + 1), "/x", most=scm)


def pages_a_read(row: Row, tmp: Path) -> None:
    from bridge.config.http_sources import DEFAULT_MAX_PAGES, MAX_MAX_PAGES
    from bridge.sync.api import MAX_PAGES, ReadApi, ScmError
    from bridge.sync.github import github_client

    scm, default, most = row.numbers()
    assert (scm, default, most) == (MAX_PAGES, DEFAULT_MAX_PAGES, MAX_MAX_PAGES)
    read = ReadApi(github_client(SCM, "t"), pages=2)
    read.spend()
    read.spend()
    with pytest.raises(ScmError, match="more than 2 pages in one read"):
        read.spend()


def graphql_cursor(row: Row, tmp: Path) -> None:
    from bridge.sync.api import ScmError
    from bridge.sync.github import _moved

    assert _moved("a", "b") == "b"
    with pytest.raises(ScmError, match="did not move"):
        _moved("a", "a")


def tries(row: Row, tmp: Path) -> None:
    from bridge.cortex.retry import RetryPolicy
    from bridge.sync.api import MAX_TRIES, RETRY

    scm, transient, http = row.numbers()
    assert (scm, transient, http) == (MAX_TRIES, RETRY.max_attempts, RetryPolicy().max_attempts)


def waiting(row: Row, tmp: Path) -> None:
    from bridge.cortex.retry import RetryPolicy
    from bridge.sync.api import MAX_WAIT_SECONDS

    scm, http, one = row.numbers()
    policy = RetryPolicy()
    assert (scm, http, one) == (MAX_WAIT_SECONDS, policy.max_elapsed, policy.max_retry_after)


def read_time(row: Row, tmp: Path) -> None:
    from bridge.sync.api import ReadApi, ScmError
    from bridge.sync.github import github_client

    assert "half of `sync.interval_minutes`" in row.bound
    ticks = iter([0.0, 10.0, 31.0])
    read = ReadApi(github_client(SCM, "t", read_seconds=30, clock=lambda: next(ticks)))
    read.spend()
    with pytest.raises(ScmError, match="still reading after 30s"):
        read.spend()


def retry_headers(row: Row, tmp: Path) -> None:
    from bridge.cortex.retry import parse_retry_after
    from bridge.sync.api import GITHUB_LIMITS, rate_limit_wait

    assert parse_retry_after("7") == 7.0
    for text in ("nan", "inf", "-inf", "1e400"):
        assert parse_retry_after(text) is None
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": text}
        assert rate_limit_wait(403, headers, 0.0, GITHUB_LIMITS) == 60.0


# (section, the start of the row's first cell) -> its check.
CHECKS: dict[tuple[str, str], Callable[[Row, Path], None]] = {
    ("Webhook bodies", "Body size"): body_size,
    ("Headers", "`X-GitHub-Delivery`"): delivery_headers,
    ("Headers", "the de-duplication key"): dedupe_key_length,
    ("Fields of an event", "repository"): a_name,
    ("Fields of an event", "environment"): a_name,
    ("Fields of an event", "the source's deploy id"): a_name,
    ("Fields of an event", "sha"): sha,
    ("Fields of an event", "url"): a_name,
    ("Fields of an event", "delivery id"): delivery_id_row,
    ("Fields of an event", "deployer name"): deployer,
    ("Fields of an event", "title"): title,
    ("Fields of an event", "the whole event"): whole_event,
    ("Fields of an event", "each entity's idempotency key"): idempotency_key,
    ("Entities", "entities one event"): entities_per_event,
    ("Entities", "a route's own `entities`"): route_entities,
    ("Entities", "each entity tag"): entity_tag,
    ("Admin API and `deliveries`", "a delivery id in"): admin_ids,
    ("Admin API and `deliveries`", "`deliveries show ID`"): cli_ids,
    ("Admin API and `deliveries`", "`limit`"): page_limit,
    ("Configuration and the environment", "the config file"): config_file,
    ("Configuration and the environment", "`cortex.url`"): cortex_url,
    ("Configuration and the environment", "a port in"): ports,
    ("Configuration and the environment", "a `*_FILE` variable"): file_variables,
    ("Log lines of refused and ignored webhooks", "the event name and the delivery id"): (
        log_line_ids
    ),
    (SYNC, "where a token goes"): token_origin,
    (SYNC, '`Link: rel="next"` links'): next_links,
    (SYNC, "redirects"): redirects,
    (SYNC, "a saved resume point"): saved_resume_point,
    (SYNC, "`GITHUB_API_URL`, `GITLAB_URL`"): scm_urls,
    (SYNC, "an answer's body"): answer_body,
    (SYNC, "a JSON answer's shape"): json_shape,
    (SYNC, "the time one answer takes"): answer_time,
    (SYNC, "items a page"): items_a_page,
    (SYNC, "pages a read"): pages_a_read,
    (SYNC, "a GraphQL cursor"): graphql_cursor,
    (SYNC, "tries of one request"): tries,
    (SYNC, "waiting for one request"): waiting,
    (SYNC, "how long one source's read goes on"): read_time,
    (SYNC, "`Retry-After`, `X-RateLimit-Reset`"): retry_headers,
}


def check_of(row: Row) -> Callable[[Row, Path], None] | None:
    for (section, start), check in CHECKS.items():
        if row.section == section and row.what.startswith(start):
            return check
    return None


def test_every_row_of_the_doc_has_its_check() -> None:
    found = rows()
    assert len(found) >= len(CHECKS)
    unchecked = [f"{row.section}: {row.what}" for row in found if check_of(row) is None]
    assert not unchecked, f"docs/limits.md rows with no check in {__name__}: {unchecked}"
    claimed = {(row.section, check_of(row)) for row in found}
    gone = [key for key, check in CHECKS.items() if (key[0], check) not in claimed]
    assert not gone, f"checks whose row is no longer in docs/limits.md: {gone}"


@pytest.mark.parametrize("row", rows(), ids=lambda row: f"{row.section}: {row.what}"[:70])
def test_the_doc_row_holds(row: Row, tmp_path: Path) -> None:
    check = check_of(row)
    if check is None:
        pytest.fail(f"no check for docs/limits.md row {row.what!r} ({row.section})")
    check(row, tmp_path)


def test_payload_entities_need_a_route_that_allows_them(tmp_path: Path) -> None:
    # The prose under "Entities": with no config (the built-in route), a deployment that
    # names entities in its payload is ignored with the reason, and nothing is stored.
    text = " ".join(DOC.read_text().split())
    assert "(default: none, so the built-in route allows none)" in text
    from bridge.app import Runtime

    runtime = Runtime(
        config=parse_config({}), store=Store.from_url(f"sqlite:///{tmp_path / 'b.db'}")
    )
    runtime.github_secret = "s"
    doc = status_doc(deployment__payload={"cortex": {"entities": ["payments-worker"]}})
    answer = github_post(client_for(runtime), "deployment_status", doc, secret="s")
    assert answer.status_code == 200 and answer.json["status"] == "ignored"
    assert "payload_entities" in answer.json["reason"]
    assert sum(runtime.store.counts().values()) == 0
