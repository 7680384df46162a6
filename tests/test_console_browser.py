"""The console in a real browser: headless Chromium (Debian's chromium and chromium-driver)
against `cortex-deploy-bridge serve`, driven through WebDriver (selenium).

It signs in, filters, retries a dead letter, sees a POST without its CSRF token refused,
checks each page's labels, contrast and width at a phone's 375 px, and saves a screenshot of
each page in artifacts/console-screenshots/ (BRIDGE_SCREENSHOTS names another folder).
Skipped, loudly, where Chromium or its driver is missing: .ci/run installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.fakecortex import FakeCortex
from bridge.store import Store
from bridge.store.journal import ReconcileRun
from tests.conftest import TOKEN, load_sample
from tests.test_serve import SECRET, Served

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("BRIDGE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BRIDGE_CHROMEDRIVER", "/usr/bin/chromedriver")
ADMIN = "console-admin-token-3b7c"
SHOTS = Path(
    os.environ.get(
        "BRIDGE_SCREENSHOTS",
        Path(__file__).resolve().parent.parent / "artifacts" / "console-screenshots",
    )
)
CONFIG = """\
cortex:
  timeout_seconds: 2
delivery:
  lease_seconds: 3
  backoff_base_seconds: 0.2
  backoff_max_seconds: 1
routes:
  - match: {}
    entities: ["{repo}"]
    payload_entities: ["payments-*"]
"""
PAGES = {
    "deliveries": "/console/deliveries",
    "dead-letters": "/console/dead",
    "turned-away": "/console/turned-away",
    "entities": "/console/entities",
    "charts": "/console/charts",
    "reconcile": "/console/reconcile",
}

# Run in the page: every visible form field has a label, every text has 4.5:1 contrast
# against its background (WCAG 1.4.3; 3:1 for large text), and nothing is wider than the
# window. Returns the problems found.
AUDIT = r"""
function rgb(s) { const m = s.match(/[\d.]+/g); return m ? m.map(Number) : [0, 0, 0, 0]; }
function lum(c) {
  const [r, g, b] = c.slice(0, 3).map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function background(el) {
  for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] > 0) return c;
  }
  return [255, 255, 255, 1];
}
const problems = [];
for (const el of document.querySelectorAll('input, select, textarea')) {
  if (el.type === 'hidden') continue;
  if (!(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
    problems.push('no label: ' + el.outerHTML.slice(0, 80));
}
for (const el of document.querySelectorAll('button, a')) {
  if (!el.textContent.trim() && !el.getAttribute('aria-label'))
    problems.push('no name: ' + el.outerHTML.slice(0, 80));
}
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const node = walker.currentNode;
  if (!node.textContent.trim()) continue;
  const el = node.parentElement;
  if (el.closest('svg, .visually-hidden, option')) continue;
  const style = getComputedStyle(el);
  if (style.visibility === 'hidden' || style.display === 'none') continue;
  const fg = lum(rgb(style.color)), bg = lum(background(el));
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  const large = parseFloat(style.fontSize) >= 24 ||
    (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5))
    problems.push('contrast ' + ratio.toFixed(2) + ': ' + node.textContent.trim().slice(0, 40));
}
const width = document.documentElement.scrollWidth;
if (width > window.innerWidth) problems.push('wider than the window: ' + width);
return problems;
"""


# The elements that reach past the phone's width, to name in a failure.
WIDE = """
const wide = [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > 376)
  .map(e => e.tagName + '.' + e.className + ' ' + e.getBoundingClientRect().right);
return [document.documentElement.scrollWidth, ...wide.slice(0, 8)];
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.skip(
            f"!!! NO BROWSER: {', '.join(missing)} missing (apt-get install chromium "
            "chromium-driver): THE CONSOLE'S BROWSER TESTS ARE SKIPPED !!!"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--lang=en-US",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def cortex_without_worker_entity() -> Iterator[FakeCortex]:
    """A stand-in Cortex that knows payments-api but not (yet) payments-worker."""
    with FakeCortex(token=TOKEN, entities={"payments-api"}) as fake:
        yield fake
        assert fake.violations == [], fake.violations


@pytest.fixture
def served(tmp_path: Path, cortex_without_worker_entity: FakeCortex) -> Iterator[Served]:
    relay = Served(
        tmp_path, cortex_without_worker_entity.url, "--skip-token-check", BRIDGE_ADMIN_TOKEN=ADMIN
    )
    (tmp_path / "bridge.yaml").write_text(CONFIG)
    relay.start()
    yield relay
    relay.stop()


def post_github(relay: Served, sample: str, *, event: str = "deployment_status") -> Any:
    import hashlib
    import hmac

    body = json.dumps(load_sample(f"github/{sample}.json")).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-Hub-Signature-256": "sha256="
        + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }
    return relay.request("POST", "/webhooks/github", body, headers)


def statuses(tmp_path: Path, ids: list[int]) -> list[str]:
    with Store.from_url(f"sqlite:///{tmp_path / 'relay.db'}", create=False) as store:
        return [store.get(i).status for i in ids]  # type: ignore[union-attr]


def wait_for(tmp_path: Path, ids: list[int], wanted: list[str]) -> None:
    """Wait until the relay's worker has settled the deliveries as ``wanted``."""
    import time

    deadline = time.monotonic() + 30
    while (found := statuses(tmp_path, ids)) != wanted:
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def fill(relay: Served, tmp_path: Path) -> list[int]:
    """Deliveries (two delivered; two dead: Cortex does not know payments-worker),
    turned-away webhooks, history, a reconcile run."""
    ids = []
    for sample in [
        "deployment_status.success.payload-entities",
        "deployment_status.success.actions",
    ] * 2:
        status, answer = post_github(relay, sample)
        assert status == 202, answer
        ids.append(int(answer["id"]))
    assert post_github(relay, "deployment_status.in_progress")[0] == 200  # ignored
    assert post_github(relay, "ping", event="ping")[0] == 200
    bad = relay.request(
        "POST",
        "/webhooks/github",
        b"{}",
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=00", "X-GitHub-Delivery": "x"},
    )
    assert bad[0] == 401
    # The payload-entities sample names payments-api and payments-worker; the other, payments-api.
    wait_for(tmp_path, ids, ["dead", "delivered", "dead", "delivered"])
    now = datetime.now(timezone.utc)
    with Store.from_url(f"sqlite:///{tmp_path / 'relay.db'}") as store:
        store.journal.add_reconcile_run(
            ReconcileRun(
                started_at=now - timedelta(minutes=5),
                finished_at=now - timedelta(minutes=4),
                owner="relay-1:4242",
                since=now - timedelta(hours=24),
                until=now - timedelta(minutes=5),
                sources=[
                    {"source": "github:acme/payments-api", "counts": {"present": 7, "recorded": 1}}
                ],
            )
        )
    return ids


def shoot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def see_every_turned_away(driver: Any) -> None:
    """Reload until both processes' notes are written (each writes its own once a second)."""
    import time

    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + 15
    while True:
        text = driver.find_element(By.TAG_NAME, "main").text
        if all(s in text for s in ("401 unauthorized", "200 ignored", "ping", "in_progress")):
            return
        assert time.monotonic() < deadline, text
        time.sleep(0.3)
        driver.refresh()


def click(driver: Any, css: str) -> None:
    """Click the element ``css`` finds, and wait for the page it leads to (the old page's
    document goes stale).

    chromedriver now and then answers a click on a node it has just found with "Node with
    given id does not belong to the document" (seen once in CI, right after a script changed
    the page): the node is found again and clicked, at most three times; the click had not
    been dispatched, so nothing is posted twice. The same answer to the wait's question about
    the old page (CI, once more) says that page is gone.
    """
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    for attempt in range(3):
        page = driver.find_element(By.TAG_NAME, "html")
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
        except StaleElementReferenceException:
            if attempt == 2:
                raise
            continue
        except WebDriverException as exc:
            if "does not belong to the document" not in str(exc.msg) or attempt == 2:
                raise
            continue
        break

    def gone(_: Any) -> bool:
        # Asking the old page's node is how its staleness shows; chromedriver may answer
        # that ask with the same "does not belong to the document" as a stale node.
        try:
            return bool(expected_conditions.staleness_of(page)(driver))
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc.msg):
                return True
            raise

    WebDriverWait(driver, 10).until(gone)


def audit(driver: Any, where: str) -> None:
    problems = driver.execute_script(AUDIT)
    assert problems == [], f"{where}: {problems}"


def test_the_console_in_chromium(
    browser: Any, served: Served, tmp_path: Path, cortex_without_worker_entity: FakeCortex
) -> None:
    from selenium.webdriver.common.by import By

    ids = fill(served, tmp_path)
    base = f"http://127.0.0.1:{served.port}"
    driver = browser
    driver.delete_all_cookies()

    # Signing in: a wrong token first, then the right one.
    driver.get(base + "/console/deliveries")
    assert driver.current_url.endswith("/console/sign-in")
    audit(driver, "sign-in")
    shoot(driver, "sign-in")
    driver.find_element(By.ID, "token").send_keys("not-the-token")
    click(driver, "form.stack button")
    main = driver.find_element(By.TAG_NAME, "main").text
    assert "not the admin token" in main, main
    driver.find_element(By.ID, "token").send_keys(ADMIN)
    click(driver, "form.stack button")
    assert driver.current_url.endswith("/console/deliveries")
    cookies = {c["name"]: c for c in driver.get_cookies()}
    session = cookies["bridge_console"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert ADMIN not in session["value"]

    # Every page, from the navigation: labelled, readable, screenshotted.
    for name, path in PAGES.items():
        click(driver, f'nav a[href="{path}"]')
        assert driver.current_url == base + path
        assert driver.find_element(By.TAG_NAME, "h1").text
        if name == "turned-away":
            see_every_turned_away(driver)
        audit(driver, name)
        shoot(driver, name)

    # Filtering: the dead ones, by the status select.
    driver.get(base + "/console/deliveries")
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "status")).select_by_value("dead")
    click(driver, "form.filters button")
    assert "status=dead" in driver.current_url
    rows = driver.find_elements(By.CSS_SELECTOR, "main table tbody tr")
    assert sorted(r.find_element(By.TAG_NAME, "a").text for r in rows) == sorted(
        str(i) for i in (ids[0], ids[2])
    )
    shoot(driver, "deliveries-filtered")

    # One delivery: what came in, what went to Cortex, each attempt.
    driver.get(f"{base}/console/deliveries/{ids[1]}")
    text = driver.find_element(By.TAG_NAME, "main").text
    made = [d["uuid"] for d in cortex_without_worker_entity.all_deploys()]
    assert sum(uuid in text for uuid in made) == 1  # the record's uuid
    assert "POST /api/v1/catalog/payments-api/deploys" in text
    assert "X-GitHub-Delivery" in text
    audit(driver, "delivery")
    shoot(driver, "delivery")

    # A POST without its CSRF token is refused (the field removed, as a forged form would lack).
    driver.get(base + "/console/dead")
    driver.execute_script("document.querySelector('main input[name=csrf]').remove()")
    click(driver, f'button[name="only"][value="{ids[2]}"]')
    assert "Refused (403)" in driver.find_element(By.TAG_NAME, "h1").text
    shoot(driver, "csrf-refused")
    assert statuses(tmp_path, ids)[2] == "dead"

    # Retrying a dead letter once Cortex knows the entity: the worker delivers it.
    cortex_without_worker_entity.entities = {"payments-api", "payments-worker"}
    driver.get(base + "/console/dead")
    click(driver, f'button[name="only"][value="{ids[0]}"]')
    assert "1 queued again" in driver.page_source
    shoot(driver, "dead-letters-retried")
    wait_for(tmp_path, ids, ["delivered", "delivered", "dead", "delivered"])
    driver.get(f"{base}/console/deliveries/{ids[0]}")
    attempts = driver.find_elements(By.CSS_SELECTOR, "main table tbody tr")
    assert [row.find_elements(By.TAG_NAME, "td")[2].text for row in attempts] == [
        "dead",
        "delivered",
    ]
    assert "404" in attempts[0].text  # Cortex's answer to the first attempt
    shoot(driver, "delivery-retried")

    # At a phone's width: nothing wider than the screen, still readable.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True},
    )
    try:
        for name, path in {
            **PAGES,
            "delivery": f"/console/deliveries/{ids[1]}",
        }.items():
            driver.get(base + path)
            wide = driver.execute_script(WIDE)
            assert driver.execute_script("return window.innerWidth") == 375, (name, wide)
            audit(driver, f"{name} at 375 px")
            shoot(driver, f"{name}-phone")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # Signing out.
    driver.get(base + "/console/deliveries")
    click(driver, "form.sign-out button")
    assert driver.current_url.endswith("/console/sign-in")
    driver.get(base + "/console/deliveries")
    assert driver.current_url.endswith("/console/sign-in")
