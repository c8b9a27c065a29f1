"""Rater app: blinded per-rater order, saving and resuming, admin export, and each security point of issue 5."""
from __future__ import annotations

import csv
import io
import json
import threading

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")
from starlette.testclient import TestClient

from backchannel.rating.app import MAX_BODY, create_app, host_names, serve_in_thread
from backchannel.rating.stimuli import StudyInput, build_study, demo_dialogue, floor_windows

ADMIN = "admin-token-for-tests-0123456789"
LOCAL = "http://127.0.0.1:8750"  # the Host a browser on the rating machine sends


def make_study(folder, n_windows=3, seed=0):
    """A small study of tone-rendered 3-5 s clips: ``n_windows`` windows x 4 conditions."""
    d = demo_dialogue(90.0, seed=seed)
    wins = floor_windows(d, "B", min_s=3.0, max_s=5.0)
    study = build_study([StudyInput(d, "B", [], windows=wins)], folder, tts="tone", per_dialogue=n_windows,
                        min_backchannels=1, seed=seed, progress=False)
    return folder / "study.json", study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("study"))


@pytest.fixture
def client(study, tmp_path):
    app = create_app(study[0], tmp_path / "ratings.sqlite", ADMIN)
    with TestClient(app, base_url=LOCAL) as c:
        c.store = app.rating.store
        c.raters = [app.rating.store.add_rater(name) for name in ("ann", "bob")]
        yield c


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_session_is_blinded_and_per_rater_ordered(client, study):
    (a, ta), (_, tb) = client.raters
    sa = client.get("/api/session", headers=auth(ta)).json()
    sb = client.get("/api/session", headers=auth(tb)).json()
    ids = sorted(c["id"] for c in study[1]["clips"])
    assert sa["rater"] == a and sorted(c["id"] for c in sa["clips"]) == ids
    assert [c["id"] for c in sa["clips"]] != [c["id"] for c in sb["clips"]]  # 12! orders: equal by chance ~2e-9
    # the same rater always gets the same order (resume), and nothing reveals the condition
    assert client.get("/api/session", headers=auth(ta)).json()["clips"] == sa["clips"]
    text = json.dumps(sa)
    assert all(set(c) == {"id", "duration", "backchannels"} for c in sa["clips"])
    for word in ("real", "random", "pause_gate", "model", "condition", ta):
        assert word not in text


def test_ratings_saved_as_given_and_resumed(client, study, tmp_path):
    (a, ta), _ = client.raters
    clip = study[1]["clips"][0]
    r = client.post("/api/rating", json={"clip": clip["id"], "timing": 4}, headers=auth(ta))
    assert r.status_code == 200 and r.json() == {"clip": clip["id"], "timing": 4, "naturalness": None}
    r = client.post("/api/rating", json={"clip": clip["id"], "naturalness": 2}, headers=auth(ta))
    assert r.json() == {"clip": clip["id"], "timing": 4, "naturalness": 2}
    r = client.post("/api/rating", json={"clip": clip["id"], "timing": 5}, headers=auth(ta))  # change of mind
    assert r.json()["timing"] == 5
    bcs = next(c for c in study[1]["clips"][1:] if c["backchannels"])
    assert client.post("/api/mark", json={"clip": bcs["id"], "bc": 0, "bad": True}, headers=auth(ta)).status_code == 200
    # a fresh server on the same database resumes where the rater stopped
    app2 = create_app(study[0], tmp_path / "ratings.sqlite", ADMIN)
    with TestClient(app2, base_url=LOCAL) as c2:
        got = c2.get("/api/session", headers=auth(ta)).json()["ratings"]
    assert got[clip["id"]] == {"timing": 5, "naturalness": 2, "bad": []}
    assert got[bcs["id"]]["bad"] == [0]
    assert client.post("/api/mark", json={"clip": bcs["id"], "bc": 0, "bad": False}, headers=auth(ta)).status_code == 200
    assert client.store.ratings_of(a).get(bcs["id"], {"bad": []})["bad"] == []


def test_rater_cannot_see_or_change_another_raters_ratings(client, study):
    (a, ta), (b, tb) = client.raters
    clip = study[1]["clips"][1]["id"]
    client.post("/api/rating", json={"clip": clip, "timing": 1, "naturalness": 1}, headers=auth(ta))
    assert client.get("/api/session", headers=auth(tb)).json()["ratings"] == {}
    r = client.post("/api/rating", json={"clip": clip, "timing": 5, "rater": a}, headers=auth(tb))
    assert r.status_code == 422  # no way to name another rater
    client.post("/api/rating", json={"clip": clip, "timing": 5}, headers=auth(tb))
    assert client.store.ratings_of(a)[clip]["timing"] == 1 and client.store.ratings_of(b)[clip]["timing"] == 5
    assert client.get("/api/admin/results", headers=auth(ta)).status_code == 403
    assert client.get("/api/admin/export.csv", headers=auth(tb)).status_code == 403


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/api/session", None), ("POST", "/api/rating", {"timing": 3}), ("POST", "/api/mark", {"bc": 0, "bad": True}),
    ("GET", "/api/audio/{clip}", None), ("GET", "/api/admin/results", None), ("GET", "/api/admin/export.csv", None)])
def test_unknown_missing_and_revoked_tokens_get_403(client, study, method, path, body):
    (a, ta), _ = client.raters
    clip = study[1]["clips"][0]["id"]
    path = path.format(clip=clip)
    kw = {"json": dict(body, clip=clip)} if body is not None else {}
    for headers in ({}, auth("not-a-token"), {"Authorization": "Basic abc"}, auth("")):
        assert client.request(method, path, headers=headers, **kw).status_code == 403
    assert client.store.revoke(a)
    assert client.request(method, path, headers=auth(ta), **kw).status_code == 403


def test_forged_clip_ids_and_bad_marks(client, study):
    _, ta = client.raters[0]
    clip = next(c for c in study[1]["clips"] if c["backchannels"])
    for forged in ("ffffffffffff", "", 7, None, "../study", clip["id"] + " "):
        r = client.post("/api/rating", json={"clip": forged, "timing": 3}, headers=auth(ta))
        assert r.status_code == 422, forged
        assert client.post("/api/mark", json={"clip": forged, "bc": 0, "bad": True}, headers=auth(ta)).status_code == 422
    n = len(clip["backchannels"])
    for bc, bad in ((n, True), (-1, True), ("0", True), (0.0, True), (0, 1), (0, "yes")):
        r = client.post("/api/mark", json={"clip": clip["id"], "bc": bc, "bad": bad}, headers=auth(ta))
        assert r.status_code == 422, (bc, bad)
    assert client.get("/api/audio/ffffffffffff", headers=auth(ta)).status_code == 404


@pytest.mark.parametrize("scores", [{"timing": 0}, {"timing": 6}, {"naturalness": -1}, {"timing": 3.5},
                                    {"timing": "4"}, {"timing": True}, {"timing": None}, {}, {"timing": [3]}])
def test_scores_out_of_range_are_refused(client, study, scores):
    a, ta = client.raters[0]
    clip = study[1]["clips"][0]["id"]
    r = client.post("/api/rating", json={"clip": clip, **scores}, headers=auth(ta))
    assert r.status_code == 422 and "error" in r.json()
    assert client.store.ratings_of(a) == {}


def test_malformed_bodies(client, study):
    _, ta = client.raters[0]
    clip = study[1]["clips"][0]["id"]
    h = dict(auth(ta), **{"Content-Type": "application/json"})
    assert client.post("/api/rating", content=b"{not json", headers=h).status_code == 422
    assert client.post("/api/rating", content=b"[1, 2]", headers=h).status_code == 422
    r = client.post("/api/rating", content=json.dumps({"clip": clip, "timing": 3}), headers=dict(auth(ta), **{
        "Content-Type": "text/plain"}))
    assert r.status_code == 415


def test_deeply_nested_json_gets_400_not_a_500(client, study):
    a, ta = client.raters[0]
    clip = study[1]["clips"][0]["id"]
    h = dict(auth(ta), **{"Content-Type": "application/json"})
    for depth in (2000, 1500):
        body = json.dumps({"clip": clip, "timing": 3})[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
        assert len(body) <= MAX_BODY  # under the size cap: only the nesting is wrong
        r = client.post("/api/rating", content=body, headers=h)
        assert r.status_code == 400 and r.json() == {"error": "body is nested too deeply"}
        r = client.post("/api/mark", content=body.replace('"timing": 3', '"bc": 0, "bad": true'), headers=h)
        assert r.status_code == 400
    assert client.store.ratings_of(a) == {}


def test_host_header_must_name_an_allowed_host(study, tmp_path):
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example."""
    app = create_app(study[0], tmp_path / "r.sqlite", ADMIN, allowed_hosts=["raters.example.org"])
    _, token = app.rating.store.add_rater()
    with TestClient(app, base_url=LOCAL) as c:
        for host in ("127.0.0.1:8750", "localhost", "LOCALHOST:80", "[::1]:8750", "raters.example.org",
                     "raters.example.org:443"):
            assert c.get("/api/session", headers={**auth(token), "Host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8750", "127.0.0.1.evil.example", "raters.example.org.evil",
                     "[::2]:8750", "", "127.0.0.1:8750/x", "a b"):
            r = c.get("/api/session", headers={**auth(token), "Host": host})
            assert r.status_code == 400 and token not in r.text, host
            assert r.headers["x-frame-options"] == "DENY"  # refused responses keep the security headers
            r = c.post("/api/rating", json={"clip": study[1]["clips"][0]["id"], "timing": 3},
                       headers={**auth(token), "Host": host})
            assert r.status_code == 400, host
    assert app.rating.store.all_ratings() == []
    # the same over a real socket (uvicorn), as a browser would send it
    server, thread, url = serve_in_thread(app)
    try:
        with httpx.Client(base_url=url, headers=auth(token), timeout=10) as c:
            assert c.get("/api/session").status_code == 200
            assert c.get("/api/session", headers={"Host": "evil.example"}).status_code == 400
    finally:
        server.should_exit = True
        thread.join(10)


def test_host_names():
    assert host_names([]) == ["127.0.0.1", "localhost", "[::1]"]
    assert host_names(["0.0.0.0", "::", None, "::1", "Raters.Example.org ", "fe80::1", "[fe80::2]"])[3:] == [
        "raters.example.org", "[fe80::1]", "[fe80::2]"]


def test_oversized_bodies_get_413(client, study):
    _, ta = client.raters[0]
    clip = study[1]["clips"][0]["id"]
    big = json.dumps({"clip": clip, "timing": 3, "pad": "x" * MAX_BODY})
    h = dict(auth(ta), **{"Content-Type": "application/json"})
    assert client.post("/api/rating", content=big, headers=h).status_code == 413

    def chunks():  # streamed without a Content-Length
        for _ in range(8):
            yield b" " * 1024
        yield json.dumps({"clip": clip, "timing": 3}).encode()

    assert client.post("/api/rating", content=chunks(), headers=h).status_code == 413
    assert client.store.ratings_of(client.raters[0][0]) == {}


def test_audio_only_from_the_study_clip_folder(client, study):
    _, ta = client.raters[0]
    clip = study[1]["clips"][0]
    r = client.get(f"/api/audio/{clip['id']}", headers=auth(ta))
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav" and r.content[:4] == b"RIFF"
    for path in ("/api/audio/..%2Fstudy.json", "/api/audio/%2E%2E%2Fstudy.json", "/api/audio/../study.json",
                 "/api/audio/..%2F..%2F..%2Fetc%2Fpasswd", f"/api/audio/{clip['id']}.wav",
                 "/static/..%2Fapp.py", "/static/../app.py", "/static/rate.html", "/static/%2E%2E%2Fstore.py"):
        r = client.get(path, headers=auth(ta))
        assert r.status_code == 404, path
        assert b"key" not in r.content and b"import" not in r.content


def test_security_headers(client):
    _, ta = client.raters[0]
    for path, h in (("/rate", {}), ("/static/rate.js", {}), ("/api/session", auth(ta)), ("/api/session", {})):
        r = client.get(path, headers=h)
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == ("no-store" if path.startswith("/api/") else "no-cache")
    page = client.get("/rate").text
    assert "<script>" not in page and 'src="/static/rate.js"' in page  # no inline script under the CSP
    # both pages: the one skeleton (head, style sheet, script) around their own content
    for path, title, script, heading in (("/rate", "Backchannel timing study", "rate.js", "How well-timed"),
                                         ("/admin", "Backchannel study results", "admin.js", "Study results")):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        page = r.text
        assert page.startswith('<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">')
        assert f"<title>{title}</title>" in page and '<link rel="stylesheet" href="/static/style.css">' in page
        assert page.index("<main>") < page.index(heading) < page.index("</main>") < page.index(f'src="/static/{script}"')
        assert "$" not in page and page.endswith("</body>\n</html>\n")
    for fragment in ("page.html", "rate-main.html", "admin-main.html"):
        assert client.get(f"/static/{fragment}").status_code == 404


def test_admin_export_and_results(client, study):
    (a, ta), (b, tb) = client.raters
    clips = study[1]["clips"]
    for i, c in enumerate(clips[:4]):
        client.post("/api/rating", json={"clip": c["id"], "timing": 1 + i, "naturalness": 5 - i}, headers=auth(ta))
        client.post("/api/rating", json={"clip": c["id"], "timing": 2 + i % 3, "naturalness": 3}, headers=auth(tb))
    r = client.get("/api/admin/export.csv", headers=auth(ADMIN))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 8 and {row["rater"] for row in rows} == {a, b}
    key = study[1]["key"]
    assert all(row["condition"] == key[row["clip"]]["condition"] for row in rows)
    assert ta not in r.text and tb not in r.text
    res = client.get("/api/admin/results", headers=auth(ADMIN)).json()
    assert res["n_clips"] == len(clips) and {x["id"]: x["done"] for x in res["raters"]} == {a: 4, b: 4}
    assert res["report"]["n_rows"] == 8
    assert client.get("/admin").status_code == 200


def test_concurrent_raters_each_rating_stored_exactly_once(tmp_path):
    """A small version of benchmarks/rating_load.py: 10 raters x 12 ratings at once over loopback."""
    path, study = make_study(tmp_path / "s", n_windows=3, seed=1)
    app = create_app(path, tmp_path / "load.sqlite", ADMIN)
    raters = [app.rating.store.add_rater() for _ in range(10)]
    server, thread, url = serve_in_thread(app)
    clips = [c["id"] for c in study["clips"]]
    errors = []

    def rater(i, token):
        with httpx.Client(base_url=url, headers=auth(token), timeout=10) as c:
            for j, clip in enumerate(clips):
                r = c.post("/api/rating", json={"clip": clip, "timing": 1 + (i + j) % 5, "naturalness": 1 + j % 5})
                if r.status_code != 200:
                    errors.append(r.status_code)
            c.post("/api/rating", json={"clip": clips[0], "timing": 1 + i % 5, "naturalness": 1})  # a retry

    try:
        threads = [threading.Thread(target=rater, args=(i, t)) for i, (_, t) in enumerate(raters)]
        [t.start() for t in threads]
        [t.join(30) for t in threads]
    finally:
        server.should_exit = True
        thread.join(10)
    assert errors == []
    rows = app.rating.store.all_ratings()
    assert len(rows) == 10 * len(clips)
    got = {(r["rater"], r["clip"]): (r["timing"], r["naturalness"]) for r in rows}
    for i, (rid, _) in enumerate(raters):
        for j, clip in enumerate(clips):
            assert got[rid, clip] == (1 + (i + j) % 5, 1 + j % 5)
