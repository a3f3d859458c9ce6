"""`report`: the static HTML audit report, checked as files and in a real headless Chromium (Selenium with the
system's chromedriver: nothing is downloaded)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ledger.report import build_report
from tests.lifecycle.cli_helpers import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report_dir(audited, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    info = build_report(audited.ledger, out, "main")
    assert info.index == out / "index.html" and info.versions == audited.versions
    assert info.facts == len(audited.requests)
    return out


def test_report_files(report_dir, audited):
    page = (report_dir / "index.html").read_text()
    assert len(re.findall(r'<tr class="version kind-', page)) == audited.versions
    assert page.count('class="version kind-revert"') == 1
    assert audited.revert.commit_hash in page and audited.revert.state_hash in page
    assert "ticket 7: wrong source" in page and "bob" in page
    assert f"reverted {audited.reverted.subject}" in page
    assert len(re.findall(r'<tr class="fact"', page)) == len(audited.requests)
    for image in ("footprint.png", "scores.png"):
        assert (report_dir / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{image}"' in page
    assert "http" not in page  # nothing fetched: it opens offline


def test_report_command(audited, capsys, tmp_path):
    result = run_cli(capsys, audited.root, "report", "main~1", "--out", tmp_path / "r")
    assert result.code == 0, result.stderr
    assert f"report of main~1: {audited.versions - 1} versions" in result.stdout
    assert (tmp_path / "r" / "index.html").exists()


def test_report_in_headless_chromium(report_dir, audited, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser and driver_path, "Debian's chromium and chromium-driver are needed (.ci/run installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.get((report_dir / "index.html").as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, "table#timeline tbody tr")
        assert len(rows) == audited.versions
        assert "revert" in rows[-1].text and audited.revert.commit_hash in rows[-1].text
        for image_id in ("heatmap", "curves"):
            width, height = driver.execute_script(
                "const i = document.getElementById(arguments[0]); return [i.naturalWidth, i.naturalHeight];",
                image_id)
            assert width > 0 and height > 0, image_id
        screenshot = tmp_path / "report.png"
        assert driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
    finally:
        driver.quit()
