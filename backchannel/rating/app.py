"""The rater web app (Starlette; ``backchannel rating serve``; optional extra ``[rating]``).

Pages: ``/rate#<token>`` (a rater's personal link; the token stays in the fragment, so it never
reaches a server log or a Referer) and ``/admin#<admin token>``. The page's script sends the token
as ``Authorization: Bearer``. API (JSON, ``Cache-Control: no-store``):

- ``GET /api/session``: the rater's clips in their own random order (blinded: opaque ids, duration,
  backchannel times) and their ratings so far, to resume.
- ``POST /api/rating`` ``{"clip", "timing"?, "naturalness"?}``: scores 1-5, saved at once.
- ``POST /api/mark`` ``{"clip", "bc", "bad"}``: (un)mark backchannel ``bc`` as a bad moment.
- ``GET /api/audio/<clip id>``: the clip's WAV, only files the study lists in its ``clips/`` folder.
- ``GET /api/admin/results``, ``GET /api/admin/export.csv``: admin token only (unblinded).

Unknown, missing or revoked tokens get 403; bad input 422; bodies over ``MAX_BODY`` bytes 413; a JSON
body nested too deeply to parse 400. A ``Host`` header other than the loopback names (``127.0.0.1``,
``localhost``, ``[::1]``) and the ``allowed_hosts`` given gets 400 (DNS rebinding protection).
"""
from __future__ import annotations

import hashlib
import hmac
import random
import string
from collections.abc import Iterable
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from backchannel.evaluation.io import json_safe

from . import SCALES
from .analysis import analyze, export_rows, write_csv
from .stimuli import load_study
from .store import Store

MAX_BODY = 4096  # bytes; a rating or mark is well under 200
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")  # bind addresses that name no host a browser would send
STATIC = Path(__file__).parent / "static"
PAGES = {"/rate": ("Backchannel timing study", "rate-main.html", "rate.js"),  # title, <main> content, script
         "/admin": ("Backchannel study results", "admin-main.html", "admin.js")}
ASSETS = {"rate.js": "text/javascript", "admin.js": "text/javascript", "style.css": "text/css"}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "media-src 'self' blob:; img-src 'self' data:; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


def render_page(path: str) -> str:
    """The HTML of page ``path`` (a key of ``PAGES``): the one skeleton ``static/page.html`` (head, style
    sheet, script tag) around the page's own ``<main>`` content."""
    title, main, script = PAGES[path]
    skeleton = string.Template((STATIC / "page.html").read_text(encoding="utf-8"))
    return skeleton.substitute(title=title, main=(STATIC / main).read_text(encoding="utf-8"), script=script)


class SecurityHeaders:
    """ASGI middleware: security headers on every response, ``no-store`` on the API."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                headers.append((b"cache-control", b"no-store" if api else b"no-cache"))
                message = dict(message, headers=headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` (declared or streamed) with 413."""

    def __init__(self, app, max_bytes: int = MAX_BODY):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await _error(413, "request body too large")(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, limited, send)


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"error": detail}, status_code=status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return _error(exc.status_code, exc.detail)


def _bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


class RatingApp:
    """The app's state: the study (clips, hidden key), the store, the admin token's hash."""

    def __init__(self, study_path: str | Path, db_path: str | Path, admin_token: str, synchronous: str = "FULL"):
        if len(admin_token) < 16:
            raise ValueError("admin token must be at least 16 characters")
        self.study_path = Path(study_path)
        self.study = load_study(self.study_path)
        self.clip_dir = (self.study_path.parent / "clips").resolve()
        self.clips = {c["id"]: c for c in self.study["clips"]}
        self.public = [{"id": c["id"], "duration": c["duration"], "backchannels": c["backchannels"]}
                       for c in self.study["clips"]]
        self.store = Store(db_path, synchronous=synchronous)
        self._admin = hashlib.sha256(admin_token.encode()).digest()

    # -------------------------------------------------------------- auth
    async def rater(self, request: Request):
        row = await run_in_threadpool(self.store.rater_for_token, _bearer(request))
        if row is None:
            raise HTTPException(403, "unknown or revoked token")
        return row

    def require_admin(self, request: Request) -> None:
        if not hmac.compare_digest(hashlib.sha256(_bearer(request).encode()).digest(), self._admin):
            raise HTTPException(403, "admin token required")

    # -------------------------------------------------------------- validation
    async def body(self, request: Request, fields: dict[str, bool]) -> dict:
        """The JSON object body; ``fields`` maps allowed keys to whether they are required."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "content type must be application/json")
        try:
            data = await request.json()
        except RecursionError:
            raise HTTPException(400, "body is nested too deeply") from None
        except ValueError:
            raise HTTPException(422, "body is not JSON") from None
        if not isinstance(data, dict):
            raise HTTPException(422, "body must be a JSON object")
        extra = set(data) - set(fields)
        missing = {k for k, req in fields.items() if req and k not in data}
        if extra or missing:
            raise HTTPException(422, f"unexpected fields {sorted(extra)}" if extra else f"missing {sorted(missing)}")
        if not isinstance(data["clip"], str) or data["clip"] not in self.clips:
            raise HTTPException(422, "unknown clip")
        return data

    # -------------------------------------------------------------- endpoints
    async def page(self, request: Request) -> Response:
        return HTMLResponse(render_page(request.url.path))

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            raise HTTPException(404, "not found")
        return FileResponse(STATIC / name, media_type=ASSETS[name])

    async def session(self, request: Request) -> Response:
        rater = await self.rater(request)
        order = sorted(self.clips)
        random.Random(rater["seed"]).shuffle(order)
        by_id = {c["id"]: c for c in self.public}
        ratings = await run_in_threadpool(self.store.ratings_of, rater["id"])
        return JSONResponse({"rater": rater["id"], "name": rater["name"], "scales": list(SCALES),
                             "clips": [by_id[c] for c in order], "ratings": ratings})

    async def rating(self, request: Request) -> Response:
        rater = await self.rater(request)
        data = await self.body(request, {"clip": True, "timing": False, "naturalness": False})
        scores = {s: data.get(s) for s in SCALES}
        for s, v in scores.items():
            if v is not None and (type(v) is not int or not 1 <= v <= 5):
                raise HTTPException(422, f"{s} must be an integer 1-5")
        if all(v is None for v in scores.values()):
            raise HTTPException(422, "no score given")
        row = await run_in_threadpool(self.store.save_rating, rater["id"], data["clip"], **scores)
        return JSONResponse({"clip": data["clip"], **row})

    async def mark(self, request: Request) -> Response:
        rater = await self.rater(request)
        data = await self.body(request, {"clip": True, "bc": True, "bad": True})
        n = len(self.clips[data["clip"]]["backchannels"])
        if type(data["bc"]) is not int or not 0 <= data["bc"] < n:
            raise HTTPException(422, f"bc must be a backchannel index 0..{n - 1}")
        if type(data["bad"]) is not bool:
            raise HTTPException(422, "bad must be true or false")
        await run_in_threadpool(self.store.set_mark, rater["id"], data["clip"], data["bc"], data["bad"])
        return JSONResponse({"clip": data["clip"], "bc": data["bc"], "bad": data["bad"]})

    async def audio(self, request: Request) -> Response:
        try:
            self.require_admin(request)
        except HTTPException:
            await self.rater(request)
        clip = self.clips.get(request.path_params["clip"])
        if clip is None:
            raise HTTPException(404, "no such clip")
        path = (self.clip_dir / clip["file"]).resolve()
        if path.parent != self.clip_dir or not path.is_file():
            raise HTTPException(404, "no such clip")
        return FileResponse(path, media_type="audio/wav")

    async def results(self, request: Request) -> Response:
        self.require_admin(request)
        rows = export_rows(await run_in_threadpool(self.store.all_ratings), self.study)
        report = analyze(rows) if rows else None
        raters = await run_in_threadpool(self.store.raters)
        return JSONResponse(json_safe({"n_clips": len(self.clips), "raters": raters, "report": report}))

    async def export(self, request: Request) -> Response:
        self.require_admin(request)
        rows = export_rows(await run_in_threadpool(self.store.all_ratings), self.study)
        return Response(write_csv(rows), media_type="text/csv",
                        headers={"content-disposition": 'attachment; filename="ratings.csv"'})


def host_names(hosts: Iterable[str | None]) -> list[str]:
    """``Host`` header names (no port) the app answers: the loopback names plus ``hosts`` (IPv6
    literals bracketed; wildcard bind addresses such as ``0.0.0.0`` dropped; ``*`` allows any host)."""
    names = list(LOOPBACK_HOSTS)
    for h in hosts:
        h = (h or "").strip().lower()
        if ":" in h and not h.startswith("["):
            h = f"[{h}]"
        if h not in WILDCARD_HOSTS and h not in names:
            names.append(h)
    return names


def create_app(study_path: str | Path, db_path: str | Path, admin_token: str,
               synchronous: str = "FULL", allowed_hosts: Iterable[str | None] = ()) -> Starlette:
    """The ASGI app for a study file and a ratings database (created if absent). It answers requests
    whose ``Host`` is a loopback name or one of ``allowed_hosts`` (:func:`host_names`), any port."""
    state = RatingApp(study_path, db_path, admin_token, synchronous)
    routes = [Route(p, state.page, methods=["GET"]) for p in PAGES] + [
        Route("/static/{name}", state.asset, methods=["GET"]),
        Route("/api/session", state.session, methods=["GET"]),
        Route("/api/rating", state.rating, methods=["POST"]),
        Route("/api/mark", state.mark, methods=["POST"]),
        Route("/api/audio/{clip}", state.audio, methods=["GET"]),
        Route("/api/admin/results", state.results, methods=["GET"]),
        Route("/api/admin/export.csv", state.export, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    wrapped = SecurityHeaders(TrustedHostMiddleware(BodyLimit(app), allowed_hosts=host_names(allowed_hosts),
                                                    www_redirect=False))
    wrapped.rating = state  # the study and the store, for the CLI and tests
    return wrapped


def serve_in_thread(app, host: str = "127.0.0.1", timeout: float = 10.0):
    """Run ``app`` with uvicorn on a free port of ``host`` in a daemon thread (tests, benchmarks).

    Returns ``(server, thread, base_url)``; stop with ``server.should_exit = True; thread.join()``.
    """
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"rating server did not start on {host} within {timeout} s")
        time.sleep(0.02)
    return server, thread, f"http://{host}:{sock.getsockname()[1]}"
