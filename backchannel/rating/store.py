"""Ratings storage: one SQLite file in WAL mode, safe to share between threads of one server.

Raters are known by a public id (``r1a2b3c``) and a secret token; only the token's SHA-256 is
stored. A rating is one row per (rater, clip) with two 1-5 scores (timing appropriateness,
naturalness), written as each score is given (an upsert: re-sending never duplicates). Bad-moment
marks are one row per (rater, clip, backchannel index).
"""
from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (
    id TEXT PRIMARY KEY, token_sha256 TEXT UNIQUE NOT NULL, name TEXT NOT NULL DEFAULT '',
    seed INTEGER NOT NULL, created REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS ratings (
    rater TEXT NOT NULL REFERENCES raters(id), clip TEXT NOT NULL,
    timing INTEGER CHECK (timing BETWEEN 1 AND 5),
    naturalness INTEGER CHECK (naturalness BETWEEN 1 AND 5),
    updated REAL NOT NULL, PRIMARY KEY (rater, clip));
CREATE TABLE IF NOT EXISTS marks (
    rater TEXT NOT NULL REFERENCES raters(id), clip TEXT NOT NULL, bc INTEGER NOT NULL CHECK (bc >= 0),
    updated REAL NOT NULL, PRIMARY KEY (rater, clip, bc));
"""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Store:
    """Ratings database at ``path``. ``synchronous`` is SQLite's: FULL survives power loss."""

    def __init__(self, path: str | Path, synchronous: str = "FULL"):
        if synchronous not in ("OFF", "NORMAL", "FULL"):
            raise ValueError(f"synchronous must be OFF, NORMAL or FULL, not {synchronous!r}")
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode})")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params=()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def _read(self, sql: str, params=()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -------------------------------------------------------------- raters
    def add_rater(self, name: str = "") -> tuple[str, str]:
        """A new rater: returns ``(rater_id, token)``; the token is shown once and not stored."""
        token = secrets.token_urlsafe(24)
        rater = "r" + secrets.token_hex(4)
        self._write("INSERT INTO raters (id, token_sha256, name, seed, created) VALUES (?, ?, ?, ?, ?)",
                    (rater, token_hash(token), name, secrets.randbits(31), time.time()))
        return rater, token

    def revoke(self, rater: str) -> bool:
        """Revoke a rater's token (their ratings stay). False if there is no such rater."""
        return self._write("UPDATE raters SET revoked = 1 WHERE id = ?", (rater,)).rowcount == 1

    def rater_for_token(self, token: str) -> sqlite3.Row | None:
        """The active rater holding ``token``; None when unknown or revoked."""
        if not token:
            return None
        rows = self._read("SELECT * FROM raters WHERE token_sha256 = ? AND revoked = 0", (token_hash(token),))
        return rows[0] if rows else None

    def raters(self) -> list[dict]:
        rows = self._read(
            "SELECT r.id, r.name, r.revoked, r.created, "
            "(SELECT COUNT(*) FROM ratings x WHERE x.rater = r.id AND x.timing IS NOT NULL "
            " AND x.naturalness IS NOT NULL) AS done FROM raters r ORDER BY r.created")
        return [dict(r) for r in rows]

    # -------------------------------------------------------------- ratings
    def save_rating(self, rater: str, clip: str, timing: int | None = None,
                    naturalness: int | None = None) -> dict:
        """Set the given scores of (rater, clip), keeping the other; returns the stored row."""
        with self._lock:
            self._db.execute(
                "INSERT INTO ratings (rater, clip, timing, naturalness, updated) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (rater, clip) DO UPDATE SET timing = COALESCE(excluded.timing, timing), "
                "naturalness = COALESCE(excluded.naturalness, naturalness), updated = excluded.updated",
                (rater, clip, timing, naturalness, time.time()))
            row = self._db.execute("SELECT timing, naturalness FROM ratings WHERE rater = ? AND clip = ?",
                                   (rater, clip)).fetchone()
        return dict(row)

    def set_mark(self, rater: str, clip: str, bc: int, bad: bool) -> None:
        """Mark (or unmark) backchannel ``bc`` of ``clip`` as a bad moment for ``rater``."""
        if bad:
            self._write("INSERT OR REPLACE INTO marks (rater, clip, bc, updated) VALUES (?, ?, ?, ?)",
                        (rater, clip, bc, time.time()))
        else:
            self._write("DELETE FROM marks WHERE rater = ? AND clip = ? AND bc = ?", (rater, clip, bc))

    def ratings_of(self, rater: str) -> dict[str, dict]:
        """This rater's ratings and marks by clip: ``{clip: {"timing", "naturalness", "bad": [bc, ...]}}``."""
        out: dict[str, dict] = {}
        for r in self._read("SELECT clip, timing, naturalness FROM ratings WHERE rater = ?", (rater,)):
            out[r["clip"]] = {"timing": r["timing"], "naturalness": r["naturalness"], "bad": []}
        for r in self._read("SELECT clip, bc FROM marks WHERE rater = ? ORDER BY bc", (rater,)):
            out.setdefault(r["clip"], {"timing": None, "naturalness": None, "bad": []})["bad"].append(r["bc"])
        return out

    def all_ratings(self) -> list[dict]:
        """Every (rater, clip) with a score or a mark: rater, clip, timing, naturalness, bad, updated."""
        rows = {(r["rater"], r["clip"]): dict(r, bad=[])
                for r in self._read("SELECT rater, clip, timing, naturalness, updated FROM ratings")}
        for r in self._read("SELECT rater, clip, bc, updated FROM marks ORDER BY bc"):
            row = rows.setdefault((r["rater"], r["clip"]), {"rater": r["rater"], "clip": r["clip"], "timing": None,
                                                            "naturalness": None, "updated": r["updated"],
                                                            "bad": []})
            row["bad"].append(r["bc"])
        return [rows[k] for k in sorted(rows)]
