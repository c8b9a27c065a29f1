"""Real-browser test of the rater page: headless Chromium (Debian package) driven by Playwright.

Opens a rater link, plays a clip, marks a backchannel while it plays (key B), rates both scales,
reloads, resumes at the next clip, rates that one too; then checks the rows in the database.
Skips when Chromium or Playwright is missing, except under CI (``CI`` set), where it fails.
"""
from __future__ import annotations

import os
import shutil
import time

import pytest

from backchannel.rating.stimuli import (
    Onset,
    StudyInput,
    build_study,
    demo_dialogue,
    floor_windows,
    listener_backchannels,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--autoplay-policy=no-user-gesture-required"]


def _need(ok: bool, why: str):
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run under CI: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    _need(sync_playwright is not None, "playwright is not installed (pip install playwright; no browser download)")
    _need(os.path.isfile(CHROMIUM), f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("uvicorn")
    return sync_playwright


def _wait_until(page, js_function: str, timeout: float = 15.0):
    """Poll a JS predicate (``wait_for_function`` would need eval, which the page's CSP forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(js_function):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout} s: {js_function}")
        time.sleep(0.05)


def test_rater_plays_rates_marks_reloads_and_resumes(sync_playwright, tmp_path):
    from starlette.testclient import TestClient

    from backchannel.rating.app import create_app, serve_in_thread

    d = demo_dialogue(60.0, seed=4)
    real = listener_backchannels(d, "B")
    wins = floor_windows(d, "B", min_s=3.0, max_s=4.0)
    model = [Onset(o.time + 0.2) for o in real]
    build_study([StudyInput(d, "B", model, windows=wins)], tmp_path / "s", conditions=("real", "model", "random"),
                tts="tone", per_dialogue=1, min_backchannels=1, progress=False, seed=4)
    app = create_app(tmp_path / "s" / "study.json", tmp_path / "r.sqlite", "admin-token-0123456789abcdef")
    store = app.rating.store
    rater, token = store.add_rater("browser")
    with TestClient(app, base_url="http://127.0.0.1") as c:  # the rater's own order, to know which clips the page shows
        first, second = c.get("/api/session", headers={"Authorization": f"Bearer {token}"}).json()["clips"][:2]
    server, thread, url = serve_in_thread(app)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{url}/rate#{token}")
            page.wait_for_selector("#play:enabled")
            assert page.inner_text("#progress") == "Clip 1 of 3 \u00b7 0 rated"
            assert page.locator(".marker").count() == len(first["backchannels"])
            assert page.locator(".score[data-scale='timing'][data-value='4']").is_disabled()  # rate after listening

            page.click("#play")
            t0 = first["backchannels"][0]
            _wait_until(page, f"() => document.getElementById('audio').currentTime > {t0 + 0.3}")
            page.keyboard.press("b")  # "bad moment" while listening: the latest backchannel heard (t0 or later)
            page.wait_for_selector(".marker.bad")
            (marked,) = [int(m.get_attribute("data-bc")) for m in page.locator(".marker.bad").all()]
            _wait_until(page, "() => document.getElementById('audio').ended")
            page.click(".score[data-scale='timing'][data-value='4']")
            page.wait_for_selector(".score.selected[data-scale='timing'][data-value='4']")
            page.click(".score[data-scale='naturalness'][data-value='3']")
            page.wait_for_selector("#next:enabled")
            assert page.inner_text("#status") == "saved"
            assert store.ratings_of(rater) == {first["id"]: {"timing": 4, "naturalness": 3, "bad": [marked]}}

            page.reload()  # resume: the next unrated clip, progress kept
            page.wait_for_selector("#play:enabled")
            assert page.inner_text("#progress") == "Clip 2 of 3 \u00b7 1 rated"
            page.click("#play")
            _wait_until(page, "() => document.getElementById('audio').ended")
            page.click(".score[data-scale='timing'][data-value='2']")
            page.wait_for_selector(".score.selected[data-scale='timing'][data-value='2']")
            page.click(".marker[data-bc='0']")  # marking from the timeline after listening
            page.wait_for_selector(".marker.bad[data-bc='0']")
            page.click(".score[data-scale='naturalness'][data-value='5']")
            page.wait_for_selector("#next:enabled")
            page.click("#prev")  # the first clip shows the saved answers
            page.wait_for_selector(".score.selected[data-scale='timing'][data-value='4']")
            assert page.locator(".marker.bad").count() == 1
            assert page.inner_text("#progress") == "Clip 1 of 3 \u00b7 2 rated"
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    assert store.ratings_of(rater) == {first["id"]: {"timing": 4, "naturalness": 3, "bad": [marked]},
                                       second["id"]: {"timing": 2, "naturalness": 5, "bad": [0]}}
