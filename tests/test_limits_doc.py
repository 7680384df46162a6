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
import hmac
import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY, Counter, Gauge

from bridge import metrics
from bridge.app import Runtime
from bridge.cli import main
from bridge.config import SyncSettings, parse_config
from bridge.config.environ import read_file_variable
from bridge.config.loading import load_config
from bridge.console import FORM_BYTES, charts
from bridge.console.access import SESSION_SECONDS
from bridge.console.pages import PAGE
from bridge.errors import BridgeError, ConfigError, InvalidDeploy, MalformedEvent, UsageError
from bridge.ingest import MAX_RECEIVED_BYTES, dedupe_key
from bridge.model import (
    MAX_EVENT_BYTES,
    MAX_KEY_BYTES,
    MAX_NAME,
    MAX_REPOSITORY,
    MAX_TITLE,
    MAX_URL,
    DeployEvent,
    DeployRef,
    Status,
    bounded,
    check_deploy,
)
from bridge.sources import PARSERS
from bridge.store import STATUSES, Store, browse
from bridge.store.browse import MAX_CHART_ROWS
from bridge.store.journal import (
    MAX_RECONCILE_RUNS,
    MAX_TEXT,
    MAX_TURNED_AWAY,
    MAX_UNAUTHORIZED,
    ReconcileRun,
)
from bridge.sync import periodic
from bridge.sync.periodic import source_label
from bridge.turned_away import FLUSH_SECONDS
from bridge.views import MAX_ID, MAX_PAGE, delivery_id
from bridge.webhooks import MAX_DEPTH
from tests.conftest import load_sample
from tests.console_kit import ORIGIN, csrf_of, page_csrf, sign_in
from tests.receiver_kit import (
    ADMIN_TOKEN,
    ARGOCD_TOKEN,
    FLUX_SECRET,
    GITLAB_TOKEN,
    argocd_post,
    client_for,
    github_post,
    gitlab_post,
    make_runtime,
    sign,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "limits.md"
GITOPS_ON = {"sources": {"flux": {"enabled": True}, "argocd": {"enabled": True}}}


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
        if not cells[0] and found and found[-1].section == section:
            # A row with an empty first cell continues the row above (another label of the
            # same metric): it is that row's subject, with its own other cells.
            cells = (found[-1].what, *cells[1:])
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


def most_setting(row: Row, key: str) -> None:
    """The row's "at most N" for the config's ``server.<key>``: N is taken, N + 1 refused."""
    most = int(re.findall(r"at most ([\d,]+)", row.bound)[0].replace(",", ""))
    assert getattr(parse_config({"server": {key: most}}).server, key) == most
    with pytest.raises(ConfigError) as caught:
        parse_config({"server": {key: most + 1}})
    assert f"server.{key}" in str(caught.value)


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
    most_setting(row, "max_body_bytes")
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


def json_nesting(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert most == MAX_DEPTH
    reason = re.findall(r'"([^"]+)"', row.answer)[0]
    client = client_for(make_runtime(tmp))

    def post(depth: int) -> Any:
        body = b'{"zen": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
        headers = {
            "X-GitHub-Event": "ping",
            "X-Hub-Signature-256": sign(body),
            "Content-Type": "application/json",
        }
        return client.post("/webhooks/github", data=body, headers=headers)

    assert post(most).json == {"status": "ignored", "reason": "ping: webhook is set up"}
    answer = post(most + 1)
    assert (answer.status_code, answer.json["reason"]) == (400, reason)


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
    assert most == {"url": MAX_URL, "repository": MAX_REPOSITORY}.get(row.what, MAX_NAME)
    field, label = FIELDS[row.what.split(" (")[0]]
    assert label in row.answer or row.what.startswith("the source")

    def value(text: str) -> Any:
        return DeployRef("deployment", text) if field == "ref" else text

    prefix = "https://d.example/" if field == "url" else ""
    bounded(event(**{field: value(prefix + "x" * (most - len(prefix)))}))
    refused(label, **{field: value(prefix + "x" * (most + 1 - len(prefix)))})
    if "no control character" in row.bound:
        for control in ("\x00", "\t", "\n", "\x7f", "\x9b", "\u2028", "\u2029", "\u202e", "\u2066"):
            refused(label, **{field: value(prefix + "a" + control + "b")})
    if "no user info" in row.bound:  # a page: [`tests/test_page_urls.py`] for the rest
        for url in ("https://u:p@d.example/x", "d.example/x", "ftp://d.example/x"):
            refused(label, **{field: url})
    if field == "repository":  # and the receiver answers 400 naming it, storing nothing
        runtime = make_runtime(tmp)
        doc = status_doc(repository__full_name="acme/" + "x" * most)
        answer = github_post(client_for(runtime), "deployment_status", doc)
        assert answer.status_code == 400 and "repository" in answer.json["reason"]
        assert sum(runtime.store.counts().values()) == 0


def sha(row: Row, tmp: Path) -> None:
    full, longer = row.numbers()[:2]
    client = client_for(make_runtime(tmp))
    cases = [
        ("a" * full, 202),
        ("a" * longer, 202),
        ("a" * 7, 400),  # abbreviated: never recorded short
        ("a" * (full - 1), 400),
        ("a" * (full + 1), 400),
        ("a" * (longer + 1), 400),
        ("g" * 40, 400),
    ]
    for n, (value, status) in enumerate(cases):
        doc = status_doc(deployment__sha=value, deployment__id=7000 + n)
        answer = github_post(client, "deployment_status", doc)
        assert answer.status_code == status, (value, answer.json)
        if status == 400:
            assert "deployment.sha" in answer.json["reason"]  # the payload path


def times(row: Row, tmp: Path) -> None:
    earliest, latest = (
        datetime.fromisoformat(found.replace("Z", "+00:00"))
        for found in re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row.bound)
    )
    assert "(not including)" in row.bound  # the latest is the first time refused
    tick = timedelta(microseconds=1)
    for field, label in (
        ("timestamp", "timestamp"),
        ("started_at", "started at"),
        ("finished_at", "finished at"),
    ):
        assert f"`{label}`" in row.answer
        bounded(event(**{field: earliest}))
        bounded(event(**{field: latest - tick}))
        refused(label, **{field: earliest - tick})
        refused(label, **{field: latest})
    # A webhook's time is read and refused so, storing nothing (the year 9999 once was stored,
    # then failed its delivery on every attempt).
    runtime = make_runtime(tmp)
    doc = status_doc(deployment_status__updated_at=latest.strftime("%Y-%m-%dT%H:%M:%SZ"))
    answer = github_post(client_for(runtime), "deployment_status", doc)
    assert answer.status_code == 400 and "timestamp" in answer.json["reason"]
    assert sum(runtime.store.counts().values()) == 0


def time_forms(row: Row, tmp: Path) -> None:
    from bridge.times import format_timestamp, parse_timestamp

    assert "cut to the microsecond" in row.bound and "never guessed" in row.bound
    for written, meant in (
        ("2026-01-10T10:00:00Z", "2026-01-10T10:00:00Z"),
        ("2026-01-10 10:00:00 UTC", "2026-01-10T10:00:00Z"),
        ("2026-01-10t11:00:00+01", "2026-01-10T10:00:00Z"),
        ("2026-01-10T11:00+0100", "2026-01-10T10:00:00Z"),
        ("2026-01-10T11:00:00,123456789+01:00", "2026-01-10T10:00:00.123Z"),
        ("1768039200", "2026-01-10T10:00:00Z"),
    ):
        assert format_timestamp(parse_timestamp(written)) == meant, written
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_timestamp("2026-01-10T10:00:00")
    runtime = make_runtime(tmp)
    fine = status_doc(deployment_status__updated_at="2026-01-10T10:00:00.123456789Z")
    assert github_post(client_for(runtime), "deployment_status", fine).status_code == 202
    zoneless = status_doc(deployment_status__updated_at="2026-01-10T10:00:00")
    answer = github_post(client_for(runtime), "deployment_status", zoneless)
    assert answer.status_code == 400 and "updated_at" in answer.json["reason"]


def own_custom_data(row: Row, tmp: Path) -> None:
    from bridge.model import OWN_CUSTOM_KEYS

    named = set(re.findall(r"the keys `(\w+)`, `(\w+)` and `(\w+)`", row.bound)[0])
    assert named == set(OWN_CUSTOM_KEYS)
    assert bounded(event(custom={"team": "payments", "source": "release-bot"})).custom
    for key in named:
        refused(f"customData.{key}", custom={key: "x"})
    from bridge.model import MAX_DEPTH

    assert f"nested at most {MAX_DEPTH} levels" in row.bound
    deep: Any = "x"
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    assert bounded(event(custom={"a": deep})).custom  # the mapping and 31 lists: 32 levels
    refused(f"nests deeper than {MAX_DEPTH} levels", custom={"a": [deep]})
    refused(f"nests deeper than {MAX_DEPTH} levels", details={"a": [deep]})
    # Nested near Python's own limit, as a record once made was (it broke every later read).
    for _ in range(970):
        deep = [deep]
    refused(f"nests deeper than {MAX_DEPTH} levels", custom={"a": deep})


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
    default = row.numbers()[0]
    assert parse_config({}).server.max_entities_per_event == default
    most_setting(row, "max_entities_per_event")
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
    event = DeployEvent(
        source="github",
        repository="acme/api",
        event="deployment_status",
        ref=DeployRef("deployment", "1"),
        status=Status.SUCCEEDED,
        timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc),
        title="",
    )
    check_deploy(event, ["e" * most])
    for bad in ("", " ", ".", "..", "e" * (most + 1), "a\x1bb", "a\u2028b"):
        with pytest.raises(InvalidDeploy, match=r"^entity "):
            check_deploy(event, [bad])
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


def config_times(row: Row, tmp: Path) -> None:
    from bridge.config.settings import MOST_SETTING

    stated = [int(n.replace(",", "")) for n in re.findall(r"(\d{1,3}(?:,\d{3})*) \(", row.bound)]
    assert sorted(set(stated)) == sorted({int(v) for v in MOST_SETTING.values()}), stated
    for key, most in MOST_SETTING.items():
        assert f"`{key}`" in row.what or f"`{key.split('.')[-1]}`" in row.what, key
        section, _, name = key.rpartition(".")
        here: dict[str, Any] = {name: most}
        if section == "http_sources.*":
            continue  # an http source's own shape: checked in test_config
        if section == "delivery" and name != "lease_seconds":
            here["lease_seconds"] = 86400  # longer than the timeout, as the lease must be
        if name == "backoff_base_seconds":
            here["backoff_max_seconds"] = most
        lease = {} if section != "cortex" else {"delivery": {"lease_seconds": 86400}}
        parse_config({section: here, **lease})
        with pytest.raises(ConfigError, match=re.escape(f"{key}: must be a positive number")):
            parse_config({section: {**here, name: most * 2}, **lease})


def config_file(row: Row, tmp: Path) -> None:
    from bridge.action.resolve import MAX_DESCRIPTOR_BYTES, descriptor_tag
    from bridge.config.loading import MAX_CONFIG_BYTES

    assert "at most 1 MiB" in row.bound and MAX_CONFIG_BYTES == MAX_DESCRIPTOR_BYTES == 1 << 20
    path = tmp / "bridge.yaml"
    most = b"#" * (MAX_CONFIG_BYTES - 1) + b"\n"
    for data in (
        b"routes: []\n\x00\n",
        b"routes: []\n\x07\n",
        b"\xff\xfe routes",
        most + b"#",
        b"a: " + b"[" * 5000 + b"]" * 5000,
    ):
        path.write_bytes(data)
        with pytest.raises(BridgeError) as caught:
            load_config(path, {})
        assert str(path) in str(caught.value)
    path.write_bytes(most)
    from bridge.config.loading import _read_text

    assert len(_read_text(str(path))) == MAX_CONFIG_BYTES  # 1 MiB: read (its parse is YAML's)
    for other in (tmp, Path("/dev/null")):
        with pytest.raises(ConfigError, match="cannot read the config file"):
            load_config(other, {})
    with pytest.raises(ConfigError, match="path is empty"):
        load_config("", {})
    descriptor = tmp / "workspace"
    descriptor.mkdir()
    (descriptor / "cortex.yaml").write_bytes(most + b"#")
    with pytest.raises(UsageError, match=r"cortex\.yaml: larger than"):
        descriptor_tag(str(descriptor))


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


def one_line_secrets(row: Row, tmp: Path) -> None:
    assert {"CORTEX_API_TOKEN", "GITHUB_WEBHOOK_SECRET", "cortex-api-token"} <= set(row.names())
    from bridge.secrets import ALL_SECRETS, NOT_ASCII, secret_from

    path = tmp / "secret"
    for name in ALL_SECRETS:
        assert secret_from({name: "  one line  "}, name) == "one line"
        path.write_text("one line\n")
        assert secret_from({f"{name}_FILE": str(path)}, name) == "one line"
        for broken in ("two\nlines", "a\x00b", "a\x7fb"):
            with pytest.raises(UsageError) as caught:
                secret_from({name: broken}, name)
            assert str(caught.value).startswith(f"{name}: ") and broken not in str(caught.value)
            path.write_text(broken)
            with pytest.raises(UsageError) as caught:
                secret_from({f"{name}_FILE": str(path)}, name)
            assert str(caught.value).startswith(f"{name}_FILE: ")
        # A byte that is no UTF-8 (the environment hands it over as a lone surrogate) is
        # named as such, for HMAC keys too (no UTF-8 signs with it), not as a line break.
        with pytest.raises(UsageError) as caught:
            secret_from({name: "ab\udce9"}, name)
        assert str(caught.value) == f"{name}: the secret holds a byte or escape that is no text" + (
            " (not UTF-8: a lone surrogate)"
        )
        # A token goes into a header as it is: "abc€" was an internal error (latin-1).
        if name in ("GITHUB_WEBHOOK_SECRET", "FLUX_WEBHOOK_SECRET"):  # HMAC keys: any text
            assert secret_from({name: "clé-€"}, name) == "clé-€"
            assert f"`{name}`" in row.bound
            continue
        with pytest.raises(UsageError) as caught:
            secret_from({name: "abc€"}, name)
        assert str(caught.value) == f"{name}: {NOT_ASCII}" and "\u20ac" not in NOT_ASCII
    assert "ASCII only" in row.bound


def flag_numbers(row: Row, tmp: Path) -> None:
    flags = {
        "--timeout": ["send", "--entity-tag", "x", "--dry-run"],
        "--poll": ["worker"],
        "--body-timeout": ["serve"],
        "--threads": ["worker"],
        "--workers": ["serve"],
        "--connections": ["serve"],
    }
    named = [name for name in row.names() if name.startswith("--")]
    assert named and set(named) <= set(flags)
    seconds = "seconds" in row.bound
    most = one_number(row) if seconds else None
    low = "0.001" if seconds else "1"
    refused = ["0", "-1", "nan", "x"] + ([str(most + 1), "inf"] if seconds else ["1.5"])
    from bridge.commands.common import COUNT_MOST

    for flag in named:
        if not seconds:  # each count flag's own most, as the row states it
            stated = re.search(rf"`{flag}`[^|]*? at most ([\d,]+)", row.bound)
            assert stated and int(stated[1].replace(",", "")) == COUNT_MOST[flag], flag
            refused_here = [*refused, str(COUNT_MOST[flag] + 1), "99999999999999999999"]
        else:
            refused_here = refused
        for value in refused_here:
            out = io.StringIO()
            with contextlib.redirect_stderr(out), pytest.raises(SystemExit) as done:
                main([*flags[flag], flag, value], {})
            assert done.value.code == 2 and f"argument {flag}: " in out.getvalue(), value
        from bridge.commands.common import count
        from bridge.commands.common import seconds as seconds_of

        taken = seconds_of if seconds else count(flag)
        top = most if seconds else COUNT_MOST[flag]
        assert taken(low) > 0 and taken(str(top)) == top


def sync_names(row: Row, tmp: Path) -> None:
    from bridge.urls import scm_name_problem

    assert "at most 39" in row.bound and "at most 100" in row.bound
    for name, kind in (
        ("a" * 39, "github-owner"),
        ("a-b", "github-owner"),
        ("acme/" + "r" * 100, "github-repository"),
        ("acme/*", "github-repository"),
        ("acme/api-*", "github-repository"),
        ("octo_acme/api", "github-repository"),
        ("acme/sub/_x.y-z", "gitlab-project"),
        ("acme", "gitlab-group"),
    ):
        assert scm_name_problem(name, kind) is None, name
    for name, kind in (
        ("a" * 40, "github-owner"),
        ("-a", "github-owner"),
        ("acme/" + "r" * 101, "github-repository"),
        ("acme/..", "github-repository"),
        ("acme/.x/y", "gitlab-project"),
        ("acme/-x", "gitlab-group"),
        ("acme", "gitlab-project"),
    ):
        assert scm_name_problem(name, kind) is not None, name
    with pytest.raises(ConfigError, match=re.escape("sync.github[0]")):
        parse_config({"sync": {"github": ["a b/c"]}})
    assert parse_config({"sync": {"github": ["acme/api-*"]}}).sync.github == ("acme/api-*",)


def sync_window(row: Row, tmp: Path) -> None:
    assert "1970-01-01" in row.bound and "9999-01-01" in row.bound
    from bridge.commands.sync import parse_when

    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert parse_when("1970-01-01", "--since", now) == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert parse_when("30d", "--since", now) == now - timedelta(days=30)
    assert parse_when("9998-12-31T23:59:59Z", "--until", now).year == 9998
    for value in ("1969-12-31", "9999-01-01", "99999999d", "2026-13-01"):
        with pytest.raises(UsageError) as caught:
            parse_when(value, "--since", now)
        assert str(caught.value).startswith("--since: ")


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
    assert "not set too" in row.bound  # one rule for every *_FILE: a secret's and the URL's
    from bridge.config.environ import database_url_from
    from bridge.secrets import secret_from

    path.write_text("from-the-file\n")
    for variable in names:
        name = variable.removesuffix("_FILE")
        both = {name: "given", variable: str(path)}
        with pytest.raises(ConfigError) as caught:
            if name == "BRIDGE_DATABASE_URL":
                database_url_from(both)
            else:
                secret_from(both, name)
        assert str(caught.value).startswith(f"{variable}: {name} is set too")


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
    # The behaviour: tests/test_sync_hostile.py::test_a_saved_resume_point_*; the cursors:
    # graphql_cursor below, tests/test_http_reader.py::test_a_saved_cursor_past_its_bound_*.
    import responses

    from bridge.sync.api import ScmError
    from bridge.sync.gitlab import GitLabReader, gitlab_client
    from bridge.sync.http_source import MAX_CURSOR
    from bridge.sync.reader import Window

    assert row.numbers() == [MAX_CURSOR]
    reader = GitLabReader(gitlab_client(SCM, "t"), "acme/web", runs_are_deploys=False)
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    for url in (
        "https://evil.example/api/v4/projects/acme%2Fweb/deployments?page=2",
        f"{SCM}/api/v4/projects/acme%2Fother/deployments?page=2",
        f"{SCM}/api/v4/projects/acme%2Fweb/pipelines?page=2",
    ):
        point = json.dumps({"phase": "deployments", "url": url})
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


def argocd_list(row: Row, tmp: Path) -> None:
    import responses

    from bridge.sync.api import ScmError
    from bridge.sync.argocd import NAMES, PATH, ArgoCDReader, argocd_client
    from bridge.sync.fetch import MAX_BYTES
    from bridge.sync.reader import Window

    assert "(16 MiB, the JSON shape)" in row.bound and MAX_BYTES == 16 * 1024 * 1024
    assert "16777216" in row.answer and NAMES["fields"] in row.bound
    window = Window(
        datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc)
    )

    def read(one: dict[str, Any] | None = None, **answer: Any) -> list[Any]:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            mock.get(f"{SCM}{PATH}", **answer)
            if one is not None:
                mock.get(f"{SCM}{PATH}/api", **one)
            return list(
                ArgoCDReader(argocd_client(SCM, "argo-token", sleep=lambda s: None)).read(window)
            )

    assert read(json={"metadata": {}, "items": []}) == []
    with pytest.raises(ScmError, match="larger than 16777216 bytes"):
        read(body=b"1" * (MAX_BYTES + 1))
    with pytest.raises(ScmError, match=r"answered a partial list \(metadata.continue\)"):
        read(json={"metadata": {"continue": "abc"}, "items": []})
    # Each Application's own answer is held to the same bounds.
    listed = {"metadata": {}, "items": [{"metadata": {"name": "api", "namespace": "argocd"}}]}
    with pytest.raises(ScmError, match="larger than 16777216 bytes"):
        read({"body": b"1" * (MAX_BYTES + 1)}, json=listed)
    gone = read({"status": 404, "json": {"error": "not found"}}, json=listed)
    assert gone[0].skipped == "application argocd/api: gone since listed (404)"
    for name in ("a/../b", 5):
        odd = {"metadata": {}, "items": [{"metadata": {"name": name, "namespace": "argocd"}}]}
        assert "is not a Kubernetes name" in read(json=odd)[0].skipped


def log_url_run(row: Row, tmp: Path) -> None:
    # The behaviour: tests/test_sync_hostile.py::test_a_log_url_that_names_no_run_keys_*.
    from bridge.sync.github import MAX_ID_DIGITS, _run_page

    most = row.numbers()[0]
    assert most == MAX_ID_DIGITS == len(str(2**64 - 1)) and "never an error" in row.answer
    runs = "https://github.com/acme/api/actions/runs"
    longest = "9" * most
    assert _run_page(f"{runs}/{longest}/job/{longest}") == (int(longest), int(longest))
    assert _run_page(f"{runs}/{longest}") == (int(longest), None)
    for url in (f"{runs}/9{longest}", f"{runs}/1/job/9{longest}", f"{runs}/{'9' * 5000}"):
        assert _run_page(url) is None


def graphql_cursor(row: Row, tmp: Path) -> None:
    # The behaviour: tests/test_sync_hostile.py::test_a_graphql_cursor_past_its_bound_*.
    from bridge.sync.api import ScmError
    from bridge.sync.github import _moved, _resume_point
    from bridge.sync.http_source import MAX_CURSOR

    assert row.numbers() == [MAX_CURSOR]
    assert f"at most {MAX_CURSOR:,}" in row.answer
    assert _moved("a", "b") == "b"
    with pytest.raises(ScmError, match="did not move"):
        _moved("a", "a")
    assert _moved("a", "c" * MAX_CURSOR) == "c" * MAX_CURSOR
    with pytest.raises(ScmError, match=f"a cursor of {MAX_CURSOR + 1:,} characters: at most"):
        _moved("a", "c" * (MAX_CURSOR + 1))
    for cursor, holds in (("c" * MAX_CURSOR, True), ("c" * (MAX_CURSOR + 1), False)):
        point = json.dumps({"phase": "deployments", "pages": [[cursor, None]], "index": 0})
        if holds:
            assert _resume_point(point)["pages"] == [[cursor, None]]
        else:
            with pytest.raises(ScmError, match="not a resume point of this reader"):
                _resume_point(point)


def http_cursor(row: Row, tmp: Path) -> None:
    # The behaviour: tests/test_http_reader.py::test_a_cursor_past_its_bound_ends_the_read.
    from bridge.sync.http_source import MAX_CURSOR

    assert row.numbers() == [MAX_CURSOR]
    assert f"at most {MAX_CURSOR:,}" in row.answer


def tries(row: Row, tmp: Path) -> None:
    from bridge.retry import RetryPolicy
    from bridge.sync.api import RETRY
    from bridge.sync.github import github_client

    scm, transient, http = row.numbers()
    assert (scm, transient, http) == (
        RETRY.max_attempts,
        RETRY.max_failures,
        RetryPolicy().max_attempts,
    )
    assert github_client(SCM, "t", max_wait=60).policy.max_attempts == scm


def waiting(row: Row, tmp: Path) -> None:
    from bridge.sync.api import RETRY
    from bridge.sync.github import github_client
    from bridge.sync.http_source import RETRY as HTTP_RETRY

    scm, http = row.numbers()
    assert (scm, http) == (RETRY.max_elapsed, HTTP_RETRY.max_elapsed)
    assert HTTP_RETRY.max_retry_after == RETRY.max_retry_after == float("inf")  # not shortened
    # The reconcile's own bound replaces the whole request's wait, and nothing else.
    assert github_client(SCM, "t", max_wait=450).policy == replace(RETRY, max_elapsed=450)


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
    from bridge.retry import parse_retry_after
    from bridge.sync.api import GITHUB_LIMITS, rate_limit_wait

    assert parse_retry_after("7") == 7.0
    for text in ("nan", "inf", "-inf", "1e400"):
        assert parse_retry_after(text) is None
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": text}
        assert rate_limit_wait(403, headers, 0.0, GITHUB_LIMITS) == 60.0


def unverified_bytes(row: Row, tmp: Path) -> None:
    default = row.numbers()[0]
    assert parse_config({}).server.max_unverified_bytes == default
    most_setting(row, "max_unverified_bytes")
    # "never less than server.max_body_bytes": a smaller setting still holds one whole body.
    assert "never less than `server.max_body_bytes`" in row.bound
    small = parse_config({"server": {"max_body_bytes": 4096, "max_unverified_bytes": 10}})
    assert small.server.unverified_limit == 4096
    assert "`503`" in row.answer
    expected = json.loads(re.findall(r"`(\{[^`]*\})`", row.answer)[0])
    retry_after = re.findall(r"`Retry-After: (\d+)`", row.answer)[0]
    limit = 4096
    runtime = make_runtime(
        tmp, {"server": {"max_body_bytes": limit, "max_unverified_bytes": 2 * limit}}
    )
    client = client_for(runtime)
    body = json.dumps(status_doc()).encode()
    body += b" " * (limit - len(body))  # one body at the limit

    def post(signature: str, delivery: str) -> Any:
        return client.post(
            "/webhooks/github",
            data=body,
            headers={
                "X-GitHub-Event": "deployment_status",
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": signature,
                "Content-Type": "application/json",
            },
        )

    forged = "sha256=" + "0" * 64
    # Other requests hold all but less than one body of the process's budget.
    runtime.unverified.take(limit + 1)  # others hold it
    for signature in (forged, sign(body)):  # the signature is not known yet: both wait
        busy = post(signature, "d-1")
        assert busy.status_code == 503
        assert {k: busy.json[k] for k in expected} == expected
        assert busy.headers["Retry-After"] == retry_after
    assert runtime.unverified.held == limit + 1  # what was refused holds nothing
    assert sum(runtime.store.counts().values()) == 0
    # GitLab's token is checked before the body is read: its bodies never count.
    assert gitlab_post(client, "Deployment Hook", "deployment.success").status_code == 202
    runtime.unverified.take(-(limit + 1))  # and give it back
    assert runtime.unverified.held == 0
    # With the budget free again, the same bodies are read and their signatures checked.
    assert post(forged, "d-1").status_code == 401
    assert post(sign(body), "d-1").status_code == 202
    assert runtime.unverified.held == 0


def flux_signature(row: Row, tmp: Path) -> None:
    assert "`FLUX_WEBHOOK_SECRET`" in row.bound
    assert "`401`" in row.answer and "nothing stored" in row.answer
    hashes = re.findall(r"sha\d+", row.bound)
    assert sorted(hashes) == ["sha224", "sha256", "sha384", "sha512"]
    runtime = make_runtime(tmp, GITOPS_ON)
    client = client_for(runtime)
    body = json.dumps(load_sample("flux/kustomization.succeeded.json")).encode()

    def post(signature: str) -> Any:
        return client.post(
            "/webhooks/flux",
            data=body,
            headers={"Content-Type": "application/json", "X-Signature": signature},
        )

    for name, wrong in (
        ("", "missing X-Signature"),
        ("md5=" + hmac.new(FLUX_SECRET.encode(), body, "md5").hexdigest(), "X-Signature"),
        ("sha256=" + hmac.new(b"not-the-secret", body, "sha256").hexdigest(), "does not match"),
        ("sha256=" + hmac.new(FLUX_SECRET.encode(), body + b" ", "sha256").hexdigest(), "match"),
    ):
        answer = post(name)
        assert answer.status_code == 401, name
        assert wrong in answer.json["reason"]
        assert FLUX_SECRET not in answer.get_data(as_text=True)
    assert sum(runtime.store.counts().values()) == 0
    for n, name in enumerate(hashes):
        answer = post(f"{name}=" + hmac.new(FLUX_SECRET.encode(), body, name).hexdigest())
        assert answer.status_code == (202 if n == 0 else 200), (name, answer.json)
    assert sum(runtime.store.counts().values()) == 1


def argocd_bearer(row: Row, tmp: Path) -> None:
    assert row.bound.startswith("`Bearer ` and `ARGOCD_WEBHOOK_TOKEN`")
    assert "compared in constant time" in row.bound
    assert row.answer == "`401`, nothing stored"
    runtime = make_runtime(tmp, GITOPS_ON)
    client = client_for(runtime)
    for value in (
        "",
        ARGOCD_TOKEN,
        f"Basic {ARGOCD_TOKEN}",
        "Bearer nope",
        f"Bearer {ARGOCD_TOKEN}x",
    ):
        answer = argocd_post(client, "sync.succeeded", headers={"Authorization": value})
        assert answer.status_code == 401, value
        assert ARGOCD_TOKEN not in answer.get_data(as_text=True)
    assert sum(runtime.store.counts().values()) == 0
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    with mock.patch("bridge.webhooks.hmac.compare_digest", spy):
        assert argocd_post(client, "sync.succeeded").status_code == 202
    assert (ARGOCD_TOKEN.encode(), ARGOCD_TOKEN.encode()) in compared
    assert sum(runtime.store.counts().values()) == 1


# --- the console ---------------------------------------------------------------------------

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def signed_in(runtime: Runtime) -> Any:
    client = client_for(runtime)
    assert sign_in(client).status_code == 303
    return client


def queue_some(runtime: Runtime, client: Any, count: int, prefix: str = "d") -> list[int]:
    ids = []
    for n in range(count):
        doc = status_doc(deployment__id=90000 + n)
        answer = github_post(client, "deployment_status", doc, delivery=f"{prefix}{n}")
        assert answer.status_code == 202, answer.json
        ids.append(int(answer.json["id"]))
    return ids


def kill_all(runtime: Runtime, ids: list[int]) -> None:
    """Claim the deliveries and dead-letter them, as the worker would."""
    claimed = runtime.store.claim(owner="w", now=runtime.clock(), lease_seconds=30, limit=len(ids))
    assert sorted(d.id for d in claimed) == sorted(ids)
    for id in ids:
        runtime.store.settle(id, "dead", owner="w", error="gone", results={}, now=runtime.clock())


def listed(page: bytes) -> set[int]:
    """The delivery ids a page of deliveries lists."""
    return {int(n) for n in re.findall(r'href="/console/deliveries/(\d+)"', page.decode())}


def received_copy_row(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert most == MAX_RECEIVED_BYTES
    assert "the page says so" in row.answer
    runtime = make_runtime(tmp, {"server": {"max_body_bytes": 4 * most}})
    client = signed_in(runtime)
    for size, cut in ((most, False), (most + 1, True)):
        doc = status_doc(deployment__id=size)
        body = json.dumps(doc).encode()
        body += b" " * (size - len(body))
        headers = {
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": f"big-{size}",
            "X-Hub-Signature-256": sign(body),
            "Content-Type": "application/json",
        }
        answer = client.post("/webhooks/github", data=body, headers=headers)
        assert answer.status_code == 202, answer.json
        found = runtime.store.get(int(answer.json["id"]))
        assert found is not None and found.received
        kept = json.loads(found.received)
        assert kept["bytes"] == size and len(kept["body"]) == most
        assert kept.get("truncated", False) is cut
        # Redacted: the signature is not kept.
        assert "X-Hub-Signature-256" not in kept["headers"] and sign(body) not in found.received
        page = client.get(f"/console/deliveries/{found.id}").get_data(as_text=True)
        assert f"{size} bytes" in page
        assert ("the first 64 KiB kept" in page) is cut


def turned_away_kept(row: Row, tmp: Path) -> None:
    most, refused, text = row.numbers()[:3]
    assert (most, refused, text) == (MAX_TURNED_AWAY, MAX_UNAUTHORIZED, MAX_TEXT)
    assert "`bridge_turned_away`" in row.what
    runtime = make_runtime(tmp)
    client = client_for(runtime)
    # Through the receiver: a refused signature with a long event name, noted and written.
    github_post(client, "e" * (text + 100), "ping", delivery="x" * (text + 1), secret="wrong")
    runtime.turned_away.flush()
    [first] = runtime.store.journal.turned_away(limit=10)
    assert (first.code, first.answer) == (401, "unauthorized")
    assert first.event == "e" * text and first.delivery == "x" * text
    # Two batches that together pass the bound: the oldest rows are deleted.
    log = runtime.turned_away
    batch = most * 3 // 5
    for n in range(2 * batch):
        log.note(
            source="gitlab",
            event="Push Hook",
            delivery=f"t{n}",
            code=200,
            answer="ignored",
            reason="r" * (text + 1),
        )
        if n == batch - 1:
            log.flush()
    log.flush()
    everything = runtime.store.journal.turned_away(limit=3 * most)
    kept = [r for r in everything if r.answer != "unauthorized"]
    assert len(kept) == most and len(everything) == most + 1  # the refused signature's too
    assert kept[0].delivery == f"t{2 * batch - 1}"
    assert kept[-1].delivery == f"t{2 * batch - most}"
    assert {len(r.reason) for r in kept} == {text}
    with runtime.store.db.transaction(write=False) as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM bridge_turned_away")).scalar() == most + 1
    # A flood of unsigned requests keeps its newest `refused` and pushes out none of the rest.
    for n in range(most + refused + 5):
        github_post(client, "flood", "ping", delivery=f"u{n}", secret="wrong")
        if n % 400 == 0:
            runtime.turned_away.flush()
    runtime.turned_away.flush()
    kept = runtime.store.journal.turned_away(limit=3 * most)
    unsigned = [r for r in kept if r.answer == "unauthorized"]
    assert len(unsigned) == refused and unsigned[0].delivery == f"u{most + refused + 4}"
    assert len(kept) == most + refused and kept[-1].delivery == f"t{2 * batch - most}"


def turned_away_buffer(row: Row, tmp: Path) -> None:
    most, refused = row.numbers()
    assert (most, refused) == (MAX_TURNED_AWAY, MAX_UNAUTHORIZED)
    assert "written once a second" in row.bound
    assert FLUSH_SECONDS == 1
    runtime = make_runtime(tmp)
    log = runtime.turned_away
    for n in range(most + 5):
        log.note(
            source="github", event="push", delivery=f"b{n}", code=200, answer="ignored", reason=""
        )
    assert len(log._notes) == most  # the memory they take: at most `most` notes
    for n in range(2 * refused):
        log.note(
            source="github", event="-", delivery=f"u{n}", code=401, answer="unauthorized", reason=""
        )
    assert len(log._notes) == most and len(log._refused) == refused
    log.flush()
    kept = [r for r in runtime.store.journal.turned_away(limit=2 * most) if r.code == 200]
    assert len(kept) == most
    assert kept[0].delivery == f"b{most + 4}" and kept[-1].delivery == "b5"  # oldest went first
    # Written by the thread within about a second, without anyone asking.
    stop = threading.Event()
    thread = log.start(stop)
    try:
        log.note(
            source="github", event="push", delivery="late", code=200, answer="ignored", reason=""
        )
        deadline = time.monotonic() + 10 * FLUSH_SECONDS
        while runtime.store.journal.turned_away(limit=1)[0].delivery != "late":
            assert time.monotonic() < deadline, "the note was not written"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)


def reconcile_runs_kept(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert most == MAX_RECONCILE_RUNS
    runtime = make_runtime(tmp)
    journal = runtime.store.journal
    for n in range(most + 3):
        journal.add_reconcile_run(
            ReconcileRun(
                started_at=T0 + timedelta(minutes=n),
                finished_at=T0 + timedelta(minutes=n, seconds=1),
                owner="host:1",
                since=T0 - timedelta(hours=24),
                until=T0,
                sources=[{"source": f"github:acme/r{n}", "counts": {"present": 1}}],
            )
        )
    runs = journal.reconcile_runs(limit=2 * most)
    assert len(runs) == most
    assert runs[0].started_at == T0 + timedelta(minutes=most + 2)
    assert runs[-1].started_at == T0 + timedelta(minutes=3)  # the three oldest deleted


def console_session(row: Row, tmp: Path) -> None:
    hours = one_number(row)
    assert "from signing in" in row.bound
    assert hours * 3600 == SESSION_SECONDS
    client = signed_in(make_runtime(tmp))
    start = time.time()
    assert client.get("/console/deliveries").status_code == 200

    def at(moment: float) -> Any:
        with mock.patch("bridge.console.time.time", lambda: moment):
            return client.get("/console/deliveries")

    assert at(start + hours * 3600 - 5).status_code == 200
    late = at(start + hours * 3600 + 5)
    assert late.status_code == 303
    assert late.headers["Location"].split("?")[0].endswith("/console/sign-in")
    assert "sign-in page" in row.answer


def console_form(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert most == FORM_BYTES
    assert "413" in row.answer and "busy" in row.answer
    runtime = make_runtime(tmp)
    client = client_for(runtime)
    csrf = csrf_of(client.get("/console/sign-in").data)
    base = f"csrf={csrf}&token={ADMIN_TOKEN}&pad=".encode()

    def post(size: int) -> Any:
        body = base + b"x" * (size - len(base))
        kind = "application/x-www-form-urlencoded"
        return client.post(
            "/console/sign-in", data=body, content_type=kind, headers={"Origin": ORIGIN}
        )

    assert post(most + 1).status_code == 413
    assert post(most).status_code == 303
    runtime.unverified.take(runtime.unverified.limit - most + 1)
    assert post(most).status_code == 503


def console_pages(row: Row, tmp: Path) -> None:
    deliveries, turned, runs = row.numbers()
    assert deliveries == PAGE
    assert "dead letters too" in row.bound
    runtime = make_runtime(tmp)
    client = signed_in(runtime)
    ids = queue_some(runtime, client, deliveries + 1)
    first = client.get("/console/deliveries")
    assert listed(first.data) == set(ids[1:])  # newest first
    older = re.findall(r'href="([^"]+)" rel="next">Older<', first.get_data(as_text=True))
    assert older
    second = client.get(older[0].replace("&amp;", "&"))
    assert listed(second.data) == {ids[0]}
    kill_all(runtime, ids)
    dead = client.get("/console/dead")
    assert listed(dead.data) == set(ids[1:])
    [older_dead] = re.findall(r'href="([^"]+)" rel="next">Older<', dead.get_data(as_text=True))
    assert listed(client.get(older_dead.replace("&amp;", "&")).data) == {ids[0]}
    # Turned-away webhooks: the newest `turned` (narrowed by answer, source or delivery id).
    for n in range(turned + 1):
        runtime.turned_away.note(
            source="github",
            event="push",
            delivery=f"ta-{n:04}-",
            code=200,
            answer="ignored",
            reason="",
        )
    page = client.get("/console/turned-away").get_data(as_text=True)
    shown = re.findall(r"ta-(\d{4})-", page)
    assert len(shown) == turned and "ta-0000-" not in page
    assert "Older" not in page  # the newest only
    assert "ta-0000-" in client.get("/console/turned-away?delivery=ta-0000-").get_data(as_text=True)
    # Reconcile runs: the newest `runs`.
    for n in range(runs + 1):
        runtime.store.journal.add_reconcile_run(
            ReconcileRun(
                started_at=T0 + timedelta(minutes=n),
                finished_at=T0 + timedelta(minutes=n),
                owner="o",
                since=T0,
                until=T0,
                sources=[{"source": f"github:acme/run-{n:04}-", "counts": {}}],
            )
        )
    page = client.get("/console/reconcile").get_data(as_text=True)
    assert len(re.findall(r"github:acme/run-(\d{4})-", page)) == runs
    assert "run-0000-" not in page and "Older" not in page
    assert row.answer.startswith("deliveries and dead letters: cursor pages (`Older`)")
    assert "turned-away webhooks and reconcile runs: the newest only" in row.answer


def console_charts(row: Row, tmp: Path) -> None:
    hours, most = row.numbers()
    assert (hours, most) == (charts.HOURS, MAX_CHART_ROWS)
    clock = Clock()
    runtime = make_runtime(tmp, clock=clock)
    client = signed_in(runtime)

    def charted() -> dict[str, int]:
        page = client.get("/console/charts").get_data(as_text=True)
        found = re.findall(r"<tr><td>(\d\d-\d\d \d\d):00</td>((?:<td>\d+</td>)+)", page)
        assert len(found) == hours
        return {when: sum(map(int, re.findall(r"\d+", cells))) for when, cells in found}

    for n, back in enumerate((hours + 1, hours - 1, 1)):
        clock.now = T0 - timedelta(hours=back)
        queue_some(runtime, client, 1, prefix=f"c{n}-")
    clock.now = T0
    counts = charted()
    assert sum(counts.values()) == 2  # the one of 25 hours ago is not charted
    assert counts[(T0 - timedelta(hours=hours - 1)).strftime("%m-%d %H")] == 1
    # At most `most` deliveries read, the newest: shown with a bound of 1.
    with mock.patch.object(browse, "MAX_CHART_ROWS", 1):
        counts = charted()
    assert sum(counts.values()) == 1 and counts[(T0 - timedelta(hours=1)).strftime("%m-%d %H")]


def dead_retried_at_once(row: Row, tmp: Path) -> None:
    most = one_number(row)
    assert most == MAX_PAGE
    runtime = make_runtime(tmp)
    client = signed_in(runtime)
    [id] = queue_some(runtime, client, 1)
    kill_all(runtime, [id])
    csrf = page_csrf(client, "/console/dead")
    absent = [str(10_000 + n) for n in range(most)]

    def retry(ids: list[str]) -> str:
        answer = client.post(
            "/console/dead/retry",
            data={"csrf": csrf, "id": ids, "selected": "1"},
            headers={"Origin": ORIGIN},
        )
        assert answer.status_code == 303
        return str(answer.headers["Location"])

    # The dead letter past the first `most` ids is left as it was.
    assert "retried=0" in retry([*absent, str(id)])
    found = runtime.store.get(id)
    assert found is not None and found.status == "dead"
    assert "retried=1" in retry([*absent[1:], str(id)])
    found = runtime.store.get(id)
    assert found is not None and found.status == "queued"


def argocd_urls(row: Row, tmp: Path) -> None:
    assert row.bound == "the same form"
    assert "one line naming the flag or key" in row.answer
    good = "https://argocd.example.com:8443/argo"
    assert parse_config({"sync": {"argocd": [good + "/"]}}).sync.argocd == (good,)
    for bad in (
        "https://admin:pw@argocd.example.com",
        "https://argocd.example.com@evil.example",
        "ftp://argocd.example.com",
        "https://argocd.example.com:0",
        "https://argocd.example.com:65536",
        "argocd.example.com",
    ):
        with pytest.raises(ConfigError) as caught:
            parse_config({"sync": {"argocd": [good, bad]}})
        assert "sync.argocd[1]" in str(caught.value) and "pw" not in str(caught.value)
        url = f"sqlite:///{tmp / 'bridge.db'}"
        env = {
            "BRIDGE_DATABASE_URL": url,
            "CORTEX_API_TOKEN": "t",
            "CORTEX_API_URL": "http://127.0.0.1:9",
            "ARGOCD_AUTH_TOKEN": "a",
        }
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["sync", "--argocd", bad, "--since", "1d"], env)
        assert code == 2, bad
        [line] = err.getvalue().splitlines()
        assert "--argocd" in line and "pw" not in line


# --- metric labels ---------------------------------------------------------------------------


def listed_values(row: Row) -> set[str]:
    """The values in backticks in a row's last cell."""
    return set(re.findall(r"`([^`]+)`", row.answer))


def counted_as(metric: Any, labels: tuple[str, ...], count: Callable[..., Any], *args: Any) -> None:
    """``count(*args)`` adds one to the series of ``labels``."""
    child = metric.labels(*labels)
    before = child._value.get()
    count(*args)
    assert child._value.get() == before + 1


def webhook_labels(row: Row, tmp: Path) -> None:
    assert row.names() == ["bridge_webhooks_total"]
    values = listed_values(row)
    label = row.bound.strip("`")
    if label == "source":
        assert values == set(metrics.WEBHOOK_SOURCES)
        counted_as(
            metrics.WEBHOOKS,
            ("other", "other", "ignored"),
            lambda: metrics.count_webhook("bitbucket", "push", "ignored"),
        )
    elif label == "event":
        known = {event for _, event in PARSERS}
        assert values - {metrics.NO_EVENT, metrics.OTHER} == known
        assert {metrics.NO_EVENT, metrics.OTHER} <= values
        for source, event in PARSERS:
            counted_as(
                metrics.WEBHOOKS,
                (source, event, "queued"),
                metrics.count_webhook,
                source,
                event,
                "queued",
            )
        # An event of another source, or a name nobody knows, is "other"; none read is "-".
        counted_as(
            metrics.WEBHOOKS,
            ("gitlab", "other", "ignored"),
            lambda: metrics.count_webhook("gitlab", "deployment", "ignored"),
        )
        # Through the receiver: an unsigned request's invented event makes no series.
        client = client_for(make_runtime(tmp))
        counted_as(
            metrics.WEBHOOKS,
            ("github", metrics.NO_EVENT, "unauthorized"),
            lambda: github_post(client, "invented-x", "ping", secret="wrong"),
        )
        counted_as(
            metrics.WEBHOOKS,
            ("github", "other", "ignored"),
            lambda: github_post(client, "invented-y", "ping"),
        )
        assert not any(
            s.labels.get("event", "").startswith("invented")
            for family in REGISTRY.collect()
            for s in family.samples
        )
    else:
        assert label == "answer"
        assert values == set(metrics.WEBHOOK_ANSWERS)
        counted_as(
            metrics.WEBHOOKS,
            ("github", "-", "other"),
            lambda: metrics.count_webhook("github", "-", "made-up"),
        )


def outcome_labels(row: Row, tmp: Path) -> None:
    assert row.names() == ["bridge_deliveries_total", "bridge_delivery_seconds"]
    assert row.bound == "`outcome`"
    assert listed_values(row) == set(metrics.OUTCOMES)
    for metric in (metrics.DELIVERIES, metrics.DELIVERY_AGE):
        assert metric._labelnames == ("outcome",)
    counted_as(metrics.DELIVERIES, ("other",), lambda: metrics.count_settled("exploded", 1.0))
    counted_as(metrics.DELIVERIES, ("dead",), lambda: metrics.count_settled("dead", 1.0))


def reconcile_labels(row: Row, tmp: Path) -> None:
    assert row.names() == ["bridge_reconcile_*"]
    assert row.bound == "`source`"
    reconcile = [
        metric
        for metric in vars(periodic).values()
        if isinstance(metric, (Counter, Gauge)) and metric._name.startswith("bridge_reconcile")
    ]
    assert len(reconcile) == 3
    assert {metric._labelnames for metric in reconcile} == {("source",)}
    assert row.answer.startswith("the `sync:` entries")
    entries = sorted(listed_values(row) - {"sync:"})
    assert entries == [
        "argocd:argocd.example:443",
        "github:acme/*",
        "gitlab:acme-group",
        "http:spice",
    ]
    settings = SyncSettings(
        github=("acme/*",),
        gitlab=("acme-group",),
        http=("spice",),
        argocd=("https://argocd.example:443",),
    )
    # However many repositories a glob or a group lists: one label per entry.
    labels = {source_label(f"github:acme/repo-{n}", settings) for n in range(500)}
    labels |= {source_label(f"gitlab:acme-group/sub/p{n}", settings) for n in range(500)}
    labels.add(source_label("http:spice", settings))
    labels.add(source_label("argocd:argocd.example:443", settings))
    assert sorted(labels) == entries == sorted(periodic.source_labels(settings))
    assert source_label("github:other/repo", settings) == metrics.OTHER


def queue_labels(row: Row, tmp: Path) -> None:
    assert row.names() == ["bridge_queue_events"]
    assert row.bound == "`status`" and row.answer == "the outbox's statuses"
    runtime = make_runtime(tmp)
    github_post(client_for(runtime), "deployment_status", status_doc())
    page = metrics.exposition(runtime.store, runtime.clock).decode()
    found = re.findall(r'^bridge_queue_events\{status="([^"]*)"\} (\S+)$', page, re.MULTILINE)
    assert {status for status, _ in found} == set(STATUSES)
    assert dict(found)["queued"] == "1.0"


# (section, the start of the row's first cell) -> its check.
def entity_records(row: Row, tmp: Path) -> None:
    # The behaviour: tests/test_sync.py::test_an_entity_with_more_records_than_a_sync_reads_*
    # and ::test_a_listing_past_its_bound_is_an_error_unless_part_is_asked_for.
    from bridge.cortex.client import MAX_PAGES, PAGE_SIZE
    from bridge.sync.engine import SYNC_PAGES

    looked, _, _, synced = row.numbers()[:4]  # 10,000 (10 pages of 1,000); 100,000
    assert (looked, synced) == (MAX_PAGES * PAGE_SIZE, SYNC_PAGES * PAGE_SIZE)
    assert f"more than {looked:,} deploys of" in row.answer


CHECKS: dict[tuple[str, str], Callable[[Row, Path], None]] = {
    ("Webhook bodies", "Body size"): body_size,
    ("Webhook bodies", "JSON nesting"): json_nesting,
    ("Headers", "`X-GitHub-Delivery`"): delivery_headers,
    ("Headers", "the de-duplication key"): dedupe_key_length,
    ("Fields of an event", "repository"): a_name,
    ("Fields of an event", "environment"): a_name,
    ("Fields of an event", "the source's deploy id"): a_name,
    ("Fields of an event", "sha"): sha,
    ("Fields of an event", "url"): a_name,
    ("Fields of an event", "timestamp, started at"): times,
    ("Fields of an event", "how a time is written"): time_forms,
    ("Fields of an event", "the user's own customData"): own_custom_data,
    ("Fields of an event", "delivery id"): delivery_id_row,
    ("Fields of an event", "deployer name"): deployer,
    ("Fields of an event", "title"): title,
    ("Fields of an event", "the whole event"): whole_event,
    ("Fields of an event", "each entity's idempotency key"): idempotency_key,
    ("Entities", "entities one event"): entities_per_event,
    ("Entities", "a route's own `entities`"): route_entities,
    ("Entities", "each entity tag"): entity_tag,
    ("Entities", "Cortex's records of one entity"): entity_records,
    ("Admin API and `deliveries`", "a delivery id in"): admin_ids,
    ("Admin API and `deliveries`", "`deliveries show ID`"): cli_ids,
    ("Admin API and `deliveries`", "`limit`"): page_limit,
    ("Configuration and the environment", "the config file"): config_file,
    ("Configuration and the environment", "`sync --github`"): sync_names,
    ("Configuration and the environment", "the config's times"): config_times,
    ("Configuration and the environment", "`cortex.url`"): cortex_url,
    ("Configuration and the environment", "a port in"): ports,
    ("Configuration and the environment", "a secret ("): one_line_secrets,
    ("Configuration and the environment", "`--timeout`"): flag_numbers,
    ("Configuration and the environment", "`--threads`"): flag_numbers,
    ("Configuration and the environment", "`sync --since`"): sync_window,
    ("Configuration and the environment", "a `*_FILE` variable"): file_variables,
    ("Log lines of refused and ignored webhooks", "the event name and the delivery id"): (
        log_line_ids
    ),
    ("Webhook bodies", "Bytes of bodies read before their signature"): unverified_bytes,
    ("Headers", "`X-Signature` (Flux)"): flux_signature,
    ("Headers", "`Authorization` (Argo CD)"): argocd_bearer,
    ("The console and what it keeps", "a webhook's copy kept"): received_copy_row,
    ("The console and what it keeps", "rejected and ignored webhooks kept"): turned_away_kept,
    ("The console and what it keeps", "notes of turned-away webhooks"): turned_away_buffer,
    ("The console and what it keeps", "reconcile runs kept"): reconcile_runs_kept,
    ("The console and what it keeps", "a console session"): console_session,
    ("The console and what it keeps", "a console form's body"): console_form,
    ("The console and what it keeps", "a page of the console's lists"): console_pages,
    ("The console and what it keeps", "the charts"): console_charts,
    ("The console and what it keeps", "dead letters retried at once"): dead_retried_at_once,
    ("Configuration and the environment", "`sync --argocd URL`"): argocd_urls,
    ("Metric labels", "`bridge_webhooks_total`"): webhook_labels,
    ("Metric labels", "`bridge_deliveries_total`"): outcome_labels,
    ("Metric labels", "`bridge_reconcile_*`"): reconcile_labels,
    ("Metric labels", "`bridge_queue_events`"): queue_labels,
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
    (SYNC, "the Argo CD application list"): argocd_list,
    (SYNC, "a deployment's workflow run"): log_url_run,
    (SYNC, "a GraphQL cursor"): graphql_cursor,
    (SYNC, "an http source's cursor"): http_cursor,
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


def row_id(row: Row) -> str:
    """A test id: the section and the first cell (and, in a table of labels, the label)."""
    label = f" {row.bound}" if row.section == "Metric labels" else ""
    return f"{row.section}: {row.what}{label}"[:70]


@pytest.mark.parametrize("row", rows(), ids=row_id)
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
    runtime = Runtime(
        config=parse_config({}), store=Store.from_url(f"sqlite:///{tmp_path / 'b.db'}")
    )
    runtime.github_secret = "s"
    doc = status_doc(deployment__payload={"cortex": {"entities": ["payments-worker"]}})
    answer = github_post(client_for(runtime), "deployment_status", doc, secret="s")
    assert answer.status_code == 200 and answer.json["status"] == "ignored"
    assert "payload_entities" in answer.json["reason"]
    assert sum(runtime.store.counts().values()) == 0
