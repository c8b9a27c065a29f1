"""Load benchmark of the rater app (issue 5, acceptance 2): N concurrent raters x M ratings on loopback.

The server runs in its own process (uvicorn, one worker, SQLite WAL, synchronous=FULL by default);
the raters are asyncio tasks with httpx in this process, each loading its session and then posting
its ratings one after another, as a person would, only without pauses. Afterwards the database must
hold every rating exactly once with the value sent. Prints the figures and writes
``benchmarks/results/rating_load.json``.

    python benchmarks/rating_load.py [--raters 50] [--ratings 40] [--synchronous FULL]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from backchannel.rating.stimuli import StudyInput, build_study, demo_dialogue
from backchannel.rating.store import Store

ADMIN = "benchmark-admin-token-0123456789"
SERVER = f"""
import sys, uvicorn
from backchannel.rating.app import create_app
study, db, port, sync = sys.argv[1:5]
uvicorn.run(create_app(study, db, {ADMIN!r}, synchronous=sync), host="127.0.0.1", port=int(port),
            log_level="warning", access_log=False)
"""


def make_study(folder: Path, n_clips: int) -> list[str]:
    """A tone-rendered study with at least ``n_clips`` clips (windows x 4 conditions); returns clip ids."""
    n_windows = -(-n_clips // 4)
    d = demo_dialogue(60.0 * n_windows, seed=0, turn_every=45.0)
    study = build_study([StudyInput(d, "B", [])], folder, tts="tone", per_dialogue=n_windows,
                        min_backchannels=1, progress=False)
    ids = [c["id"] for c in study["clips"]]
    if len(ids) < n_clips:
        raise SystemExit(f"study has {len(ids)} clips, need {n_clips}")
    return ids[:n_clips]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected(i: int, j: int) -> tuple[int, int]:
    """The scores rater ``i`` gives to its ``j``-th clip (timing, naturalness)."""
    return 1 + (i + j) % 5, 1 + (i * 7 + j * 3) % 5


async def rater(c: httpx.AsyncClient, i: int, token: str, n: int, lat: list, stats: dict, max_tries: int = 3):
    """One rater: load the session, then post ``n`` ratings in its order (each retried at most ``max_tries``)."""
    auth = {"Authorization": f"Bearer {token}"}
    t0 = time.perf_counter()
    clips = (await c.get("/api/session", headers=auth)).json()["clips"]  # the rater's own blinded order
    stats["session_s"].append(time.perf_counter() - t0)
    for j, clip in enumerate(clips[:n]):
        timing, nat = expected(i, j)
        for attempt in range(max_tries):
            t0 = time.perf_counter()
            try:
                r = await c.post("/api/rating", json={"clip": clip["id"], "timing": timing, "naturalness": nat},
                                 headers=auth)
                ok = r.status_code == 200 and r.json() == {"clip": clip["id"], "timing": timing,
                                                           "naturalness": nat}
            except httpx.HTTPError:
                ok = False
            lat.append(time.perf_counter() - t0)
            if ok:
                break
            stats["retries"] += 1
        else:
            stats["failed"] += 1
    return [(clip["id"], expected(i, j)) for j, clip in enumerate(clips[:n])]


async def run_load(raters: list[tuple[str, str]], url: str, n: int) -> tuple[list, dict, float, list]:
    lat, stats = [], {"retries": 0, "failed": 0, "session_s": []}
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for _ in raters]  # one per rater, made before timing
    try:
        t0 = time.perf_counter()
        sent = await asyncio.wait_for(asyncio.gather(*(rater(c, i, tok, n, lat, stats)
                                                       for c, (i, (_, tok)) in zip(clients, enumerate(raters)))),
                                      timeout=600)
        return lat, stats, time.perf_counter() - t0, sent
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--raters", type=int, default=50)
    ap.add_argument("--ratings", type=int, default=40, help="ratings per rater (= clips in the study)")
    ap.add_argument("--synchronous", default="FULL", choices=("OFF", "NORMAL", "FULL"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rating_load.json")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_study(tmp / "study", args.ratings)
        db = tmp / "ratings.sqlite"
        store = Store(db)
        raters = [store.add_rater(f"load{i}") for i in range(args.raters)]
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp / "study" / "study.json"), str(db),
                                   str(port), args.synchronous])
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):  # at most ~20 s for the server to come up
                try:
                    httpx.get(url + "/rate", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                raise SystemExit("server did not start")
            lat, stats, wall, sent = asyncio.run(run_load(raters, url, args.ratings))
        finally:
            server.terminate()
            server.wait(10)
        rows = store.all_ratings()
        store.close()

    got = {(r["rater"], r["clip"]): (r["timing"], r["naturalness"]) for r in rows}
    want = {(rid, clip): scores for (rid, _), items in zip(raters, sent) for clip, scores in items}
    n_expected = args.raters * args.ratings
    lost = sum(1 for k, v in want.items() if got.get(k) != v)
    extra = len(set(got) - set(want))
    ms = np.array(lat) * 1000
    result = {
        "raters": args.raters, "ratings_per_rater": args.ratings, "synchronous": args.synchronous,
        "expected": n_expected, "sent": len(want), "stored": len(rows), "lost_or_wrong": lost, "unexpected": extra,
        "retries": stats["retries"], "failed": stats["failed"], "requests": len(lat),
        "latency_ms": {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                       "p99": float(np.percentile(ms, 99)), "max": float(ms.max())},
        "session_ms_p95": float(np.percentile(np.array(stats["session_s"]) * 1000, 95)),
        "wall_s": wall, "ratings_per_s": len(lat) / wall,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    ok = len(want) == n_expected and len(rows) == n_expected and lost == 0 and extra == 0 and stats["failed"] == 0
    result["ok"] = ok
    print(f"{args.raters} raters x {args.ratings} ratings on loopback ({os.cpu_count()} CPUs, "
          f"SQLite WAL synchronous={args.synchronous}):")
    print(f"  stored {len(rows)} / {n_expected}, lost or wrong {lost}, unexpected {extra}, "
          f"retries {stats['retries']}, failed {stats['failed']}")
    lm = result["latency_ms"]
    print(f"  latency ms: p50 {lm['p50']:.1f}  p95 {lm['p95']:.1f}  p99 {lm['p99']:.1f}  max {lm['max']:.1f}; "
          f"session p95 {result['session_ms_p95']:.1f} ms")
    print(f"  {len(lat)} requests in {wall:.2f} s = {result['ratings_per_s']:.0f} ratings/s; "
          f"{'OK' if ok else 'FAILED'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
