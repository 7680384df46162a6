"""End to end: each preset reads its platform's stand-in (real HTTP on loopback)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from bridge.config.http_sources import parse_http_sources
from bridge.model import Status
from bridge.sync.http_source import HttpReader, HttpSourceError, make_http_reader
from bridge.sync.reader import Found, Window
from tests.http_standins import PhasedApi, QoderApi, SpiceApi, StandIn

TOKEN = "pat-2c4e6a8b0d"
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
WINDOW = Window(T0 - timedelta(days=30), T0)
SHA = "89abcdef0123456789abcdef0123456789abcdef"


class Sleeps(list[float]):
    """An injected sleep that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def reader(
    stand_in: StandIn, preset: str, sleeps: Sleeps | None = None, **entry: Any
) -> HttpReader:
    """The reader of an entry on ``preset`` pointed at ``stand_in``."""
    data = {
        "preset": preset,
        "url": stand_in.url,  # type: ignore[attr-defined]
        "token_env": "PLATFORM_TOKEN",
        "repository": f"acme/{preset}-app",
        **entry,
    }
    specs = parse_http_sources({preset: data})
    return make_http_reader(
        preset, specs, {"PLATFORM_TOKEN": TOKEN}, sleep=sleeps if sleeps is not None else Sleeps()
    )


def ids(founds: list[Found]) -> list[str]:
    return [f.event.ref.id for f in founds if f.event is not None]


def strict(stand_in: StandIn) -> Iterator[Any]:
    with stand_in:
        yield stand_in
        assert stand_in.violations == [], stand_in.violations


@pytest.fixture
def phased() -> Iterator[PhasedApi]:
    yield from strict(PhasedApi(token=TOKEN))


@pytest.fixture
def qoder() -> Iterator[QoderApi]:
    yield from strict(QoderApi(token=TOKEN))


@pytest.fixture
def spice() -> Iterator[SpiceApi]:
    yield from strict(SpiceApi(token=TOKEN))


PHASED_STATUSES = ("completed", "failed", "cancelled", "in_progress", "pending")


def fill_phased(api: PhasedApi, count: int) -> None:
    """``count`` deploys a day apart, the newest 12 h before T0, all statuses in turn."""
    for i in range(count):
        api.add(f"dpl_{i:03d}", PHASED_STATUSES[i % 5], T0 - timedelta(days=i, hours=12))
    api.add("dpl_other", "completed", T0 - timedelta(days=1), app="app_2")


# -- seed 002: page / pageSize, phases ------------------------------------------------------


def test_phased_reads_every_deploy_of_the_window_once_across_pages(phased: PhasedApi) -> None:
    fill_phased(phased, 40)
    source = reader(phased, "phased", pagination={"size": 7}, params={"productionAppId": "app_1"})
    founds = list(source.read(WINDOW))
    # Deploys 0..29 began inside the window; 30 began 30.5 days back, before it.
    assert sorted(ids(founds)) == [f"dpl_{i:03d}" for i in range(30)]
    assert not [f for f in founds if f.event is None]
    # 40 deploys of app_1 at 7 a page: 6 pages, then the empty 7th ends the read.
    pages = [query for _, query in phased.received]
    assert [q["page"] for q in pages] == [[str(n)] for n in range(1, 8)]
    assert all(q["pageSize"] == ["7"] and q["productionAppId"] == ["app_1"] for q in pages)


def test_phased_times_come_from_the_phases(phased: PhasedApi) -> None:
    created = T0 - timedelta(days=2)
    for ident, status in (("a", "completed"), ("b", "failed"), ("c", "pending")):
        phased.add(ident, status, created)
    events = {f.event.ref.id: f.event for f in reader(phased, "phased").read(WINDOW) if f.event}
    done, failed, waiting = events["a"], events["b"], events["c"]
    # The pipeline began with "orchestrate", 30 s after the record was made.
    assert done.started_at == created + timedelta(seconds=30)
    assert done.finished_at == done.timestamp == created + timedelta(seconds=30, minutes=8)
    assert (done.status, failed.status, waiting.status) == (
        Status.SUCCEEDED,
        Status.FAILED,
        Status.PENDING,
    )
    assert failed.finished_at == created + timedelta(seconds=30, minutes=4)
    # Nothing ran yet: the start falls back to createdAt, and it is the event's time.
    assert waiting.started_at == waiting.timestamp == created
    assert waiting.finished_at is None
    assert done.details == {"deploymentId": "a", "sourceStatus": "completed"}


def test_phased_resume_continues_without_repeats(phased: PhasedApi) -> None:
    fill_phased(phased, 20)
    options: dict[str, Any] = {"pagination": {"size": 4}, "params": {"productionAppId": "app_1"}}
    first: list[Found] = []
    for found in reader(phased, "phased", **options).read(WINDOW):
        first.append(found)
        if found.resume == '{"page": 3}':
            break  # interrupted after page 2
    resume = first[-1].resume
    phased.received.clear()
    rest = list(reader(phased, "phased", **options).read(WINDOW, resume=resume))
    assert phased.received[0][1]["page"] == ["3"]
    both = ids(first) + ids(rest)
    assert Counter(both).most_common(1)[0][1] == 1
    assert sorted(both) == [f"dpl_{i:03d}" for i in range(20)]


def test_phased_unmapped_status_is_skipped_with_the_reason(phased: PhasedApi) -> None:
    fill_phased(phased, 5)
    founds = list(reader(phased, "phased", status={"cancelled": None}).read(WINDOW))
    skipped = [f.skipped for f in founds if f.event is None]
    assert skipped == [
        "deployment dpl_002: status 'cancelled' is not mapped in http_sources.phased.status"
    ]
    assert len(ids(founds)) == 5  # four app_1 deploys and app_2's (no productionAppId filter)


def test_phased_stand_in_refuses_what_its_document_does_not_take(phased: PhasedApi) -> None:
    with pytest.raises(HttpSourceError, match=r"answered 400: .*unknown query parameter 'sort'"):
        list(reader(phased, "phased", params={"sort": "asc"}).read(WINDOW))
    assert phased.violations == ["unknown query parameter 'sort'"]
    phased.violations.clear()


# -- seed 003: cursor after_id / has_more / next_page -----------------------------------------


def fill_qoder(api: QoderApi, count: int) -> None:
    for i in range(count):
        status = "paused" if i % 4 == 1 else "active"
        api.add(f"dep_{i:03d}", T0 - timedelta(days=i, hours=6), status=status, archived=i % 7 == 3)


def test_qoder_reads_every_deployment_once_and_stops_past_the_window(qoder: QoderApi) -> None:
    fill_qoder(qoder, 60)
    founds = list(reader(qoder, "qoder", pagination={"limit": 8}).read(WINDOW))
    # Active, paused and archived deployments alike were deployed when created.
    assert sorted(ids(founds)) == [f"dep_{i:03d}" for i in range(30)]
    assert {f.event.status for f in founds if f.event} == {Status.SUCCEEDED}
    # Newest first by created_at: the read stops with the page that passes the window's start
    # by a day (items 24..31 on page 4), not at the 60th.
    queries = [query for _, query in qoder.received]
    assert len(queries) == 4
    assert queries[0] == {"limit": ["8"], "include_archived": ["true"]}
    assert [q.get("after_id") for q in queries[1:]] == [["dep_007"], ["dep_015"], ["dep_023"]]
    assert all(f.event is None or f.event.title == f"deployment {f.event.ref.id}" for f in founds)


def test_qoder_resume_continues_after_the_cursor(qoder: QoderApi) -> None:
    fill_qoder(qoder, 25)
    first = []
    for found in reader(qoder, "qoder", pagination={"limit": 10}).read(WINDOW):
        first.append(found)
        if found.resume:
            break  # killed after the first page
    assert first[-1].resume == '{"cursor": "dep_009"}'
    rest = list(
        reader(qoder, "qoder", pagination={"limit": 10}).read(WINDOW, resume=first[-1].resume)
    )
    assert ids(first) + ids(rest) == [f"dep_{i:03d}" for i in range(25)]
    assert rest[-1].resume == '{"done": true}'


def test_qoder_honours_429_retry_after(qoder: QoderApi) -> None:
    fill_qoder(qoder, 12)
    qoder.fail_next(429, retry_after="4")
    qoder.fail_next(503, retry_after="1", times=2)
    sleeps = Sleeps()
    founds = list(reader(qoder, "qoder", sleeps, pagination={"limit": 5}).read(WINDOW))
    assert len(ids(founds)) == 12
    assert sleeps == [4.0, 1.0, 1.0]


def test_qoder_wrong_token_is_the_documented_401(qoder: QoderApi) -> None:
    specs = parse_http_sources(
        {"q": {"preset": "qoder", "url": qoder.url, "token_env": "Q", "repository": "a/b"}}
    )
    source = make_http_reader("q", specs, {"Q": "expired-pat-123"})
    with pytest.raises(HttpSourceError, match="answered 401: the token in Q was refused") as e:
        list(source.read(WINDOW))
    assert "expired-pat-123" not in str(e.value)


# -- seed 004: newest first with a limit; created / queued --------------------------------------

SPICE_STATUSES = ("succeeded", "failed", "queued", "created", "in_progress")


def test_spice_maps_every_documented_status(spice: SpiceApi) -> None:
    for i, status in enumerate(SPICE_STATUSES):
        spice.add(100 + i, status, T0 - timedelta(days=i + 1), sha=SHA)
    events = {f.event.ref.id: f.event for f in reader(spice, "spice").read(WINDOW) if f.event}
    assert {ident: e.status for ident, e in events.items()} == {
        "100": Status.SUCCEEDED,
        "101": Status.FAILED,
        "102": Status.PENDING,
        "103": Status.PENDING,
        "104": Status.IN_PROGRESS,
    }
    done = events["100"]
    assert done.sha == SHA
    assert done.title == "Deploy 100"
    assert done.deployer_name == "dana"
    assert done.finished_at == T0 - timedelta(days=1) + timedelta(minutes=5)
    assert events["102"].finished_at is None
    assert spice.received == [("/v1/apps/42/deployments", {"limit": ["100"]})]


def test_spice_reads_the_window_and_says_what_the_limit_cuts_off(spice: SpiceApi) -> None:
    for i in range(30):
        spice.add(i, "succeeded", T0 - timedelta(days=i, hours=1))
    founds = list(reader(spice, "spice", pagination={"limit": 10}).read(WINDOW))
    assert ids(founds) == [str(i) for i in reversed(range(10))]  # oldest first
    assert founds[-1].event is None
    assert "lists only the 10 newest deploys" in founds[-1].skipped
    everything = list(reader(spice, "spice", pagination={"limit": 1000}).read(WINDOW))
    # Day 30 + 1 h is before the window.
    assert ids(everything) == [str(i) for i in reversed(range(30))]


def test_spice_resume_after_an_id_without_repeats(spice: SpiceApi) -> None:
    for i in range(6):
        spice.add(i, "succeeded", T0 - timedelta(days=i, hours=1))
    first = []
    for found in reader(spice, "spice").read(WINDOW):
        first.append(found)
        if len(first) == 2:
            break
    rest = list(reader(spice, "spice").read(WINDOW, resume=first[-1].resume))
    assert ids(first) + ids(rest) == [str(i) for i in reversed(range(6))]


@pytest.mark.parametrize(
    ("token", "url_suffix", "words"),
    [
        pytest.param("no-scope", "", "answered 403: the token in PLATFORM_TOKEN may not", id="403"),
        pytest.param(TOKEN, "/../../7/deployments", "answered 404: no such list", id="no-app"),
    ],
)
def test_spice_refusals_are_the_documented_ones(
    spice: SpiceApi, token: str, url_suffix: str, words: str
) -> None:
    url = spice.url if not url_suffix else f"{spice.base}/v1/apps/7/deployments"
    specs = parse_http_sources(
        {"s": {"preset": "spice", "url": url, "token_env": "PLATFORM_TOKEN", "repository": "a/b"}}
    )
    source = make_http_reader("s", specs, {"PLATFORM_TOKEN": token})
    with pytest.raises(HttpSourceError, match=words):
        list(source.read(WINDOW))
    assert spice.violations == []


# -- all three -----------------------------------------------------------------------------


def filled(platform: str) -> StandIn:
    """A stand-in of ``platform`` holding 12 finished deploys, one a day before T0."""
    if platform == "phased":
        phased = PhasedApi(token=TOKEN)
        for i in range(12):
            phased.add(f"dpl_{i}", "completed", T0 - timedelta(days=i + 1))
        return phased
    if platform == "qoder":
        qoder = QoderApi(token=TOKEN)
        for i in range(12):
            qoder.add(f"dep_{i}", T0 - timedelta(days=i + 1))
        return qoder
    spice = SpiceApi(token=TOKEN)
    for i in range(12):
        spice.add(i, "succeeded", T0 - timedelta(days=i + 1))
    return spice


SMALL_PAGES = {
    "phased": {"size": 5},
    "qoder": {"limit": 5},
    "spice": {"limit": 20},
}
PLATFORMS = pytest.mark.parametrize("platform", ["phased", "qoder", "spice"])


@PLATFORMS
def test_each_platform_honours_429_retry_after(platform: str) -> None:
    sleeps = Sleeps()
    with filled(platform) as api:
        api.fail_next(429, retry_after="9")
        source = reader(api, platform, sleeps, pagination=SMALL_PAGES[platform])
        assert len(ids(list(source.read(WINDOW)))) == 12
        assert sleeps == [9.0]
        assert api.violations == []


@PLATFORMS
def test_each_platform_refuses_a_wrong_token_with_401(platform: str) -> None:
    with filled(platform) as api:
        url = api.url  # type: ignore[attr-defined]
        entry = {"preset": platform, "url": url, "token_env": "T", "repository": "a/b"}
        specs = parse_http_sources({platform: entry})
        source = make_http_reader(platform, specs, {"T": "wrong-token-77"})
        with pytest.raises(HttpSourceError, match="answered 401: the token in T was refused"):
            list(source.read(WINDOW))
        assert len(api.received) == 1  # a refusal is not retried


@PLATFORMS
def test_each_platform_answers_404_off_its_path(platform: str) -> None:
    with filled(platform) as api:
        entry = {
            "preset": platform,
            "url": api.base + "/v2/deploymentz",
            "token_env": "T",
            "repository": "a/b",
        }
        source = make_http_reader(platform, parse_http_sources({platform: entry}), {"T": TOKEN})
        with pytest.raises(HttpSourceError, match="answered 404: no such list"):
            list(source.read(WINDOW))
        assert api.violations == ["no route GET /v2/deploymentz"]
