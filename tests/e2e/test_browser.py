"""The dashboard in a real browser (issue 12): Debian's chromium, headless, driven by
selenium through Debian's chromedriver (never a downloaded browser), against a live
``clearing serve`` on 127.0.0.1 over the served ledger of ``tests/api``.

Logs in with a token, opens each page, checks that its chart rendered (an inline SVG with
a non-zero size and the series' labels), follows a number to its event, and saves a
screenshot of every page to ``$CLEARING_ARTIFACTS`` (default: the test's temporary
directory). Skipped when chromium or chromedriver is missing, unless
``CLEARING_REQUIRE_BROWSER=1`` (``.ci/run`` installs both and sets it), which makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import SECRETS, served_ledger

CLEARING = str(Path(sys.executable).parent / "clearing")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
#: page, its chart, a label that series must show
PAGES = (("/", "insurance-fund", "balance"), ("/fund", "insurance-fund", "in: liquidation_penalty"),
         ("/accounts", "coverage", "maintenance"), ("/markets", "open-interest", "BTC-PERP open interest"),
         ("/liquidations", "liquidations", "liquidation fills"), ("/losses", "losses", "socialize_per_contract"),
         ("/reports", None, None))


def _browser_missing() -> str | None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    return f"not installed: {', '.join(missing)} (apt-get install chromium chromium-driver)" if missing else None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    reason = _browser_missing()
    if reason is not None:
        if os.environ.get("CLEARING_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("browser")
    db = served_ledger(str(directory / "ledger.db"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = directory / "access.log"
    process = subprocess.Popen([CLEARING, "--db", db, "serve", "--port", str(port), "--access-log", str(log)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process)
        yield base, log
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_until_up(base: str, process: subprocess.Popen[str]) -> None:
    request = urllib.request.Request(f"{base}/api/v1/health", headers={"Authorization": f"Bearer {SECRETS['fca']}"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"clearing serve exited: {process.stderr.read() if process.stderr else ''}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if json.load(response)["store"] == "reachable":
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise AssertionError("clearing serve did not answer within 60 s")


@pytest.fixture(scope="module")
def browser(server: tuple[str, Path]) -> Iterator[Any]:
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not look for a driver to download
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100",
                     "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.implicitly_wait(20)  # an element looked up right after a click waits for the next page
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = Path(os.environ.get("CLEARING_ARTIFACTS") or tmp_path_factory.mktemp("screenshots"))
    target.mkdir(parents=True, exist_ok=True)
    return target


def test_a_wrong_token_is_refused_at_the_login_page(server, browser):
    from selenium.webdriver.common.by import By

    base, _ = server
    browser.get(f"{base}/fund")
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "token").send_keys("clr_wrong")
    browser.find_element(By.ID, "login").click()
    assert "not one this ledger issued" in browser.find_element(By.ID, "login-error").text


def test_log_in_open_every_page_see_its_chart_and_follow_a_number_to_its_event(server, browser, artifacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    base, log = server
    browser.get(f"{base}/fund")
    browser.find_element(By.ID, "token").send_keys(SECRETS["fca"])
    browser.find_element(By.ID, "login").click()
    WebDriverWait(browser, 30).until(lambda driver: driver.current_url == f"{base}/fund")
    for path, chart, label in PAGES:
        browser.get(f"{base}{path}")
        assert "Traceback" not in browser.page_source
        if chart is not None:
            svg = browser.find_element(By.CSS_SELECTOR, f"#chart-{chart} svg")
            assert svg.size["width"] > 100 and svg.size["height"] > 100, (path, svg.size)
            assert label in svg.get_attribute("textContent"), (path, label)
        name = path.strip("/") or "overview"
        assert browser.save_screenshot(str(artifacts / f"dashboard-{name}.png"))
        assert (artifacts / f"dashboard-{name}.png").stat().st_size > 1000
    browser.get(f"{base}/fund")
    link = browser.find_element(By.CSS_SELECTOR, '#table-movements a[href^="/events/"]')
    position = link.text
    amount_row = link.find_element(By.XPATH, "./ancestor::tr").text
    link.click()
    WebDriverWait(browser, 30).until(lambda driver: driver.current_url.endswith(f"/events/{position}"))
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Event {position}"
    raw = browser.find_element(By.ID, "raw").text
    assert "balance_after" in raw and any(part in raw for part in amount_row.split() if part.replace(".", "").isdigit())
    assert browser.save_screenshot(str(artifacts / f"dashboard-event-{position}.png"))
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(entry["path"] == f"/events/{position}" and entry["token"] == "fca" and entry["status"] == 200
               for entry in entries)
    assert SECRETS["fca"] not in log.read_text()


def test_serve_refuses_a_port_in_use_and_a_host_it_cannot_listen_on(server, tmp_path):
    base, _ = server
    port = base.rsplit(":", 1)[1]
    db = tmp_path / "any.db"
    assert subprocess.run([CLEARING, "--db", str(db), "deposit", "a", "1"], capture_output=True).returncode == 1
    taken = subprocess.run([CLEARING, "--db", str(db), "serve", "--port", port], capture_output=True, text=True, timeout=60)
    assert taken.returncode == 3 and "[address_in_use]" in taken.stderr, taken.stderr
    elsewhere = subprocess.run([CLEARING, "--db", str(db), "serve", "--host", "192.0.2.1", "--port", port],
                               capture_output=True, text=True, timeout=60)
    assert elsewhere.returncode == 3 and "[address_unusable]" in elsewhere.stderr, elsewhere.stderr
