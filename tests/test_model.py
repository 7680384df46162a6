"""The normalized event, its mapping to SaveDeployRequest, and rollback detection."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from bridge.errors import InvalidDeploy, MalformedEvent
from bridge.fakecortex import validate_save_deploy_request
from bridge.mapping import build_deploy_request, idempotency_key, key_of
from bridge.model import (
    DeployEvent,
    DeployRef,
    DeployType,
    Status,
    bounded,
    check_deploy,
    event_from_dict,
    event_to_dict,
)
from bridge.record.core import type_of
from bridge.rollback import PastDeploy, same_sha
from bridge.times import format_timestamp, parse_timestamp

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
SHA_A, SHA_B, SHA_C = "a" * 40, "b" * 40, "c" * 40


def make(**overrides: object) -> DeployEvent:
    fields: dict[str, object] = {
        "source": "gitlab",
        "repository": "acme/backend/payments-api",
        "event": "deployment",
        "ref": DeployRef("job", "796"),
        "status": Status.SUCCEEDED,
        "timestamp": T0,
        "title": "Add retries\n\nlong body",
        "sha": SHA_A,
        "environment": "production",
        "url": "https://gitlab.example.com/acme/backend/payments-api/-/jobs/796",
        "deployer_name": "Jane Doe",
        "deployer_email": "jane@example.com",
        "started_at": T0 - timedelta(seconds=95),
        "finished_at": T0,
        "details": {"jobId": 796},
        "custom": {"team": "payments"},
    }
    fields.update(overrides)
    return DeployEvent(**fields)  # type: ignore[arg-type]


def test_request_is_valid_and_complete() -> None:
    body = build_deploy_request(make(), "payments-api", DeployType.DEPLOY)
    assert validate_save_deploy_request(body) == []
    assert body["timestamp"] == "2026-11-23T10:00:00Z"
    assert body["deployer"] == {"name": "Jane Doe", "email": "jane@example.com"}
    custom = body["customData"]
    assert custom["status"] == "succeeded"
    assert custom["durationSeconds"] == 95
    assert custom["startedAt"] == "2026-11-23T09:58:25Z"
    assert custom["team"] == "payments"
    assert key_of(body) == "gitlab:acme/backend/payments-api:job:796:production:payments-api"


def test_user_custom_data_cannot_replace_the_idempotency_key() -> None:
    body = build_deploy_request(make(custom={"bridge": "mine"}), "x", DeployType.DEPLOY)
    assert key_of(body) == idempotency_key(make(), "x")


def test_key_names_the_deploy_not_the_delivery() -> None:
    assert idempotency_key(make(delivery_id="d1"), "x") == idempotency_key(
        make(delivery_id="d2", status=Status.PENDING), "x"
    )
    assert idempotency_key(make(), "x") != idempotency_key(make(), "y")
    assert idempotency_key(make(), "x") != idempotency_key(make(environment="staging"), "x")


def test_round_trip() -> None:
    event = make(type=DeployType.ROLLBACK, entities=("a", "b"))
    assert event_from_dict(event_to_dict(event)) == event


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2021-04-28 21:50:00 +0200", "2021-04-28T19:50:00Z", id="gitlab-offset"),
        pytest.param("2021-04-28 21:50:00 UTC", "2021-04-28T21:50:00Z", id="gitlab-utc"),
        pytest.param("2019-05-15T15:20:55Z", "2019-05-15T15:20:55Z", id="github"),
        pytest.param("2024-05-14T11:14:30+02:00", "2024-05-14T09:14:30Z", id="iso-offset"),
        pytest.param("2023-11-29T22:55:38.284Z", "2023-11-29T22:55:38.284Z", id="millis"),
        pytest.param("1700000000", "2023-11-14T22:13:20Z", id="epoch"),
        # `date -u +%FT%T.%NZ` (GitLab CI's dotenv hand-over, send --timestamp): nanoseconds.
        pytest.param("2026-01-10T10:00:00.144579100Z", "2026-01-10T10:00:00.144Z", id="nanos"),
        pytest.param("2026-01-10T10:00:00.5+01:00", "2026-01-10T09:00:00.500Z", id="tenths"),
        pytest.param("2026-01-10t10:00:00,25z", "2026-01-10T10:00:00.250Z", id="comma-lower"),
        pytest.param("2026-01-10T10:00Z", "2026-01-10T10:00:00Z", id="no-seconds"),
        pytest.param("2026-01-10T10:00:00+05", "2026-01-10T05:00:00Z", id="hour-offset"),
    ],
)
def test_timestamps_end_as_utc(text: str, expected: str) -> None:
    assert format_timestamp(parse_timestamp(text)) == expected


TIMES = [
    "2026-01-10T10:00:00.144579100Z",
    "2026-01-10T10:00:00.5+01:00",
    "2021-04-28 21:50:00 +0200",
    "2021-04-28 21:50:00 UTC",
    "2026-01-10T10:00Z",
    "2026-12-01T10:00:00.123456789-0330",
]
REFUSED = [
    "2024-05-14T09:14:30",  # no zone
    "yesterday",
    "",
    "2024-13-40T00:00Z",
    "2026-01-10T24:00:00Z",
    "2026-01-10T10:00:60Z",
    "2026-01-10T10:00:00+25:00",
    "20260110T100000Z",  # ISO 8601's basic form: no source sends it, and 3.10 refuses it
    "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",  # Arabic-Indic digits
    "\uff12\uff10\uff12\uff16-01-10T10:00:00Z",  # full-width digits
]


@pytest.mark.system  # a process per Python on this machine
def test_timestamps_parse_alike_on_every_python_the_bridge_supports() -> None:
    # Python 3.10's fromisoformat takes a fraction of 3 or 6 digits and an offset with a
    # colon only: on it, every GitLab Deployment Hook (status_changed_at "... +0200") was a
    # 400 and `send --timestamp "$(date -u +%FT%T.%NZ)"` a usage error.
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_action_runner import interpreters_here

    root = Path(__file__).resolve().parent.parent
    probe = (
        "import json, sys\n"
        "from bridge.times import format_timestamp, parse_timestamp\n"
        "times, refused = json.loads(sys.argv[1])\n"
        "out = [format_timestamp(parse_timestamp(t)) for t in times]\n"
        "for t in refused:\n"
        "    try:\n"
        "        parse_timestamp(t)\n"
        "        out.append('accepted ' + t)\n"
        "    except ValueError:\n"
        "        pass\n"
        "print(json.dumps(out))\n"
    )
    here = [format_timestamp(parse_timestamp(t)) for t in TIMES]
    found = {v: p for v, p in interpreters_here().items() if v >= (3, 10)}
    found[sys.version_info[:2]] = sys.executable
    for version, python in sorted(found.items()):
        done = subprocess.run(
            [python, "-c", probe, json.dumps([TIMES, REFUSED])],
            env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (version, done.stderr)
        assert json.loads(done.stdout) == here, version


@pytest.mark.parametrize("text", REFUSED)
def test_bad_timestamps_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def detect_type(sha: str, at: datetime, past: list[PastDeploy]) -> DeployType:
    """The core's type of a deploy of ``sha`` at ``at`` (its type auto) after ``past``."""
    return type_of(make(sha=sha, timestamp=at, type=None), past)


def history(*shas: str) -> list[PastDeploy]:
    return [PastDeploy(sha, T0 - timedelta(hours=len(shas) - i)) for i, sha in enumerate(shas)]


@pytest.mark.parametrize(
    ("past", "sha", "expected"),
    [
        pytest.param([], SHA_A, DeployType.DEPLOY, id="first-ever"),
        pytest.param([SHA_A, SHA_B], SHA_C, DeployType.DEPLOY, id="new-sha"),
        pytest.param([SHA_A, SHA_B], SHA_A, DeployType.ROLLBACK, id="older-sha"),
        pytest.param([SHA_A, SHA_B], SHA_B, DeployType.DEPLOY, id="redeploy-latest"),
        pytest.param([SHA_A, SHA_B], SHA_A[:8], DeployType.ROLLBACK, id="short-sha"),
    ],
)
def test_rollback_detection(past: list[str], sha: str, expected: DeployType) -> None:
    assert detect_type(sha, T0, history(*past)) is expected


def test_rollback_judged_by_event_time_not_arrival() -> None:
    past = [PastDeploy(SHA_A, T0 - timedelta(hours=2)), PastDeploy(SHA_B, T0 + timedelta(hours=1))]
    assert detect_type(SHA_B, T0, past) is DeployType.DEPLOY  # B came after this event


def test_same_sha_needs_seven_hex() -> None:
    assert not same_sha("aaaaaa", SHA_A)
    assert same_sha("AAAAAAA", SHA_A)


# --- bounds: what the bridge stores (docs/limits.md) --------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        pytest.param({"ref": DeployRef("job", "7\x00")}, "deploy id", id="nul-deploy-id"),
        pytest.param({"ref": DeployRef("job", "7" * 256)}, "deploy id", id="long-deploy-id"),
        pytest.param({"sha": "a" * 39 + "\n"}, "sha", id="lf-sha"),
        pytest.param({"delivery_id": "d\x7f"}, "delivery id", id="del-delivery-id"),
        pytest.param({"deployer_email": "e" * 256}, "deployer email", id="long-email"),
        pytest.param({"details": {"workflow": "w" * 20000}}, "details.workflow", id="whole-event"),
        # A lone surrogate (JSON's "\ud800" alone) is no text: no UTF-8 carries it.
        pytest.param({"environment": "prod\ud800"}, "environment", id="surrogate-environment"),
        pytest.param({"sha": "\udfff" + "a" * 39}, "sha", id="surrogate-sha"),
        pytest.param({"custom": {"team": "a\udc80"}}, "custom", id="surrogate-custom-value"),
        pytest.param({"custom": {"t\ud800": 1}}, "custom", id="surrogate-custom-key"),
        pytest.param({"details": {"run": "\ud83d"}}, "details.run", id="surrogate-details"),
        pytest.param({"details": {"r\ud800": 1}}, "details", id="surrogate-details-key"),
    ],
)
def test_bounded_names_the_field(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(MalformedEvent, match=named):
        bounded(make(**overrides))


def test_bounded_mends_free_text() -> None:
    event = bounded(make(title="a\x00b" + "c" * 300, deployer_name="\x1b", deployer_email=" "))
    assert event.title == "a b" + "c" * 252
    assert (event.deployer_name, event.deployer_email) == (None, None)
    assert bounded(make(title="Add retries")) == make(title="Add retries")


@pytest.mark.parametrize(
    ("title", "kept"),
    [
        pytest.param("Add retries\n\nlong body", "Add retries", id="commit-message"),
        pytest.param("\x00\n  Ship\x07\x07it \r\nbody", "Ship it", id="first-line-with-text"),
        pytest.param("One\u2028Two", "One", id="line-separator"),
        pytest.param("One\x85Two", "One", id="nel"),
        pytest.param("One\tTwo\x1b[0m", "One Two [0m", id="controls-in-the-line"),
        pytest.param("\n\x00\n", "", id="nothing"),
        pytest.param("Ship\ud800it \U0001f680", "Ship it \U0001f680", id="lone-surrogate"),
    ],
)
def test_a_title_is_its_first_line_with_text_mended(title: str, kept: str) -> None:
    assert bounded(make(title=title)).title == kept


@pytest.mark.parametrize(
    ("tag", "problem"),
    [
        ("payments-api", None),
        ("e" * 255, None),
        ("e" * 256, "256 characters long"),
        (".", "names no entity"),
        ("..", "names no entity"),
        ("...", None),
        ("a\u2029b", "control character"),
        (" ", "is empty"),
    ],
)
def test_entity_tag_problems(tag: str, problem: str | None) -> None:
    if problem is None:
        assert check_deploy(make(), [tag]).event.entities == ()
        return
    with pytest.raises(InvalidDeploy) as caught:
        check_deploy(make(), [tag])
    assert caught.value.field == "entity"
    assert problem in str(caught.value)


def test_a_default_title_has_no_stray_space() -> None:
    # Outside a CI, with no sha and no environment, the title was "Deploy " (stored so).
    import dataclasses

    from bridge.mapping import default_title

    bare = dataclasses.replace(make(), sha=None, environment=None, repository="")
    assert default_title(bare) == "Deploy"
    assert default_title(dataclasses.replace(bare, environment="prod")) == "Deploy to prod"
    assert default_title(dataclasses.replace(bare, sha="a" * 40)) == "Deploy aaaaaaaaaaaa"


# -- a secret the face holds, echoed into a deploy -------------------------------------------

TOKEN_ECHOED = "tok-7f3a9c21e5b04d88"


def test_a_secret_in_free_text_is_masked_and_said() -> None:
    from bridge.redact import MASK, spellings

    event = make(
        title=f"deploy with {TOKEN_ECHOED}",
        url=f"https://ci.example/job?token={TOKEN_ECHOED}",
        deployer_name=f"bot {TOKEN_ECHOED}",
        custom={"note": TOKEN_ECHOED, TOKEN_ECHOED: 1},
        details={"workflow": f"w {TOKEN_ECHOED}"},
    )
    checked = check_deploy(event, ("payments-api",), spelled=spellings([TOKEN_ECHOED]))
    assert TOKEN_ECHOED not in json.dumps(checked.stored)
    assert TOKEN_ECHOED not in repr(checked.event)
    assert checked.event.title == f"deploy with {MASK}"
    assert checked.event.custom == {"note": MASK, MASK: 1}
    labels = [label for label, _ in checked.notes]
    assert labels == ["title", "url", "deployer name", "custom", "details"]
    assert all("recorded with it masked (***)" in note for _, note in checked.notes)
    # What the request to Cortex is built from holds no trace of it either.
    body = build_deploy_request(checked.event, "payments-api", DeployType.DEPLOY)
    assert TOKEN_ECHOED not in json.dumps(body)


def test_a_secret_as_json_escapes_spell_it_is_found() -> None:
    from bridge.redact import spellings

    secret = 'tok"with\\quote'
    checked = check_deploy(make(title=f"x {secret}"), spelled=spellings([secret]))
    assert secret not in checked.event.title and checked.notes


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("environment", f"prod-{TOKEN_ECHOED}", "environment"),
        ("repository", f"acme/{TOKEN_ECHOED}", "repository"),
        ("ref", DeployRef("job", TOKEN_ECHOED), "deploy id"),
        ("delivery_id", TOKEN_ECHOED, "delivery id"),
        ("entities", (f"svc-{TOKEN_ECHOED}",), "entity"),
    ],
)
def test_a_secret_in_what_names_the_deploy_is_refused_naming_the_field(
    field: str, value: object, named: str
) -> None:
    from bridge.redact import spellings

    with pytest.raises(InvalidDeploy) as caught:
        check_deploy(make(**{field: value}), spelled=spellings([TOKEN_ECHOED]))
    assert caught.value.field == named
    assert TOKEN_ECHOED not in str(caught.value)
    assert "holds a secret the bridge was given" in str(caught.value)


def test_a_secret_shorter_than_twelve_characters_is_not_looked_for() -> None:
    from bridge.model import MIN_SECRET
    from bridge.redact import spellings

    short = "x" * (MIN_SECRET - 1)
    checked = check_deploy(make(title=f"fix {short}"), spelled=spellings([short]))
    assert checked.event.title == f"fix {short}" and checked.notes == ()
    assert check_deploy(make(title="plain"), spelled=spellings([TOKEN_ECHOED])).notes == ()


def test_a_secret_across_the_titles_cut_leaves_no_part_of_it() -> None:
    # The title was cut to MAX_TITLE first and looked for secrets after: a token running
    # across the cut was no longer whole, and its first characters reached Cortex.
    from bridge.model import MAX_TITLE
    from bridge.redact import MASK, spellings

    title = "x" * (MAX_TITLE - 10) + f" {TOKEN_ECHOED} done"
    checked = check_deploy(make(title=title), spelled=spellings([TOKEN_ECHOED]))
    assert TOKEN_ECHOED[:7] not in checked.event.title
    assert checked.event.title == "x" * (MAX_TITLE - 10) + f" {MASK} done"
    # Masked, it fits: nothing was cut, and the note says only what was done.
    assert [label for label, _ in checked.notes] == ["title"]
    assert "masked" in checked.notes[0][1]
    # Longer still, it is masked first and cut after, and both are said.
    checked = check_deploy(make(title=title + "y" * 300), spelled=spellings([TOKEN_ECHOED]))
    assert TOKEN_ECHOED[:7] not in checked.event.title
    assert len(checked.event.title) == MAX_TITLE
    assert [label for label, _ in checked.notes] == ["title", "title"]


def test_a_secret_in_an_entity_given_apart_from_the_event_is_refused() -> None:
    # send's --entity-tag, the Action's input and the entities a route's template made
    # ({project}, {owner}-{repo}) are given to the check apart from the event's own: only
    # the event's were looked in, and the token reached Cortex in the record's key and in
    # the URL of the request (/catalog/{tag}/deploys).
    from bridge.redact import spellings

    for entities, named in (((f"svc-{TOKEN_ECHOED}",), None), (("svc", f"{TOKEN_ECHOED}-x"), ())):
        with pytest.raises(InvalidDeploy) as caught:
            check_deploy(make(), entities, named=named, spelled=spellings([TOKEN_ECHOED]))
        assert caught.value.field == "entity"
        assert "holds a secret the bridge was given" in str(caught.value)
        assert TOKEN_ECHOED not in str(caught.value)


def test_a_refusal_that_shows_a_value_never_shows_a_secret_in_it() -> None:
    # An entity too long, a key too long: their refusals show the tag's first characters,
    # and were made before the secrets were looked for (a token's first 50 characters in the
    # 400's reason, the Action's error, the console's turned-away list).
    from bridge.redact import spellings

    long_token = "tok-" + "9f" * 30
    for event, entities in (
        (make(), (long_token + "x" * 300,)),
        (make(entities=(long_token + "x" * 300,)), ()),
        (make(repository="\U0001d11e" * 500), (f"{long_token}-" + "\U0001d11e" * 180,)),
    ):
        with pytest.raises(InvalidDeploy) as caught:
            check_deploy(event, entities, spelled=spellings([long_token]))
        assert long_token[:20] not in str(caught.value), caught.value
        assert "holds a secret the bridge was given" in str(caught.value)


def test_a_secret_that_is_a_number_in_customdata_is_masked_too() -> None:
    # A password of digits only (the database's), held in customData or a source's details as
    # a number: it was found in the stored form but only text was masked, so it went to
    # Cortex as it was, and no note said so.
    from bridge.redact import MASK, spellings

    secret = "902847361520"
    event = make(custom={"build": int(secret), "ratio": 1.5}, details={"n": [int(secret + "7")]})
    checked = check_deploy(event, spelled=spellings([secret]))
    assert secret not in json.dumps(checked.stored)
    assert checked.event.custom == {"build": MASK, "ratio": 1.5}
    assert checked.event.details == {"n": [f"{MASK}7"]}
    assert [label for label, _ in checked.notes] == ["custom", "details"]
    # Each note names the field as the user knows it, not by the model's attribute.
    assert [note.split(" holds")[0] for _, note in checked.notes] == [
        "the event's customData",
        "the source's details",
    ]
    # A bool, None and a number holding none stay what they are.
    plain = make(custom={"a": True, "b": None, "c": 12345678901})
    assert check_deploy(plain, spelled=spellings([secret])).event.custom == plain.custom


@pytest.mark.parametrize("secret", ['tok"with\\quote-abc', "contraseña-muy-larga"])
def test_a_secret_json_escaped_inside_a_text_is_masked(secret: str) -> None:
    # A JSON document held as text (a platform's field, a message quoting a request) spells
    # the secret as JSON escapes it: the look through the stored form missed it there (the
    # stored form escapes the escapes), and it went to Cortex as it was, with no note.
    from bridge.redact import MASK, spellings

    quoted = f"cfg={json.dumps({'t': secret})}"
    event = make(custom={"raw": quoted}, details={"message": quoted})
    checked = check_deploy(event, spelled=spellings([secret]))
    assert checked.event.custom == {"raw": f'cfg={{"t": "{MASK}"}}'}
    assert checked.event.details == {"message": f'cfg={{"t": "{MASK}"}}'}
    assert [label for label, _ in checked.notes] == ["custom", "details"]
