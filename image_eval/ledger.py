"""The SQLite ledger: every job's state and result, so an interrupted run resumes exactly.

Each state change is one transaction. A result is written atomically (the image to a temporary
file, ``os.replace``d into place, and only then the row marked done), so a crash at any point
leaves either no result or a whole one; image names derive from the job key, so a job redone
after a crash overwrites its own file and never adds a second one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path

from .jobs import Job

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    prompt_index INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    categories TEXT NOT NULL,
    harmful INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    method TEXT NOT NULL,
    strength REAL NOT NULL,
    settings TEXT NOT NULL,
    workflow_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    server TEXT,
    prompt_id TEXT,
    images TEXT,
    error TEXT,
    started REAL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS scores (
    key TEXT NOT NULL,
    image INTEGER NOT NULL,
    judge TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (key, image, judge)
);
CREATE TABLE IF NOT EXISTS events (at REAL NOT NULL, server TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT);
"""


def write_atomically(path: Path, data: bytes) -> None:
    """Whole file or nothing: a temporary file in the same folder, flushed, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class Ledger:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add_jobs(self, jobs: list[Job]) -> int:
        """Insert jobs not yet known; returns how many were new."""
        with self.transaction() as db:
            before = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
            db.executemany(
                "INSERT OR IGNORE INTO jobs (key, prompt_index, prompt, categories, harmful, seed, method, strength,"
                " settings, workflow_hash, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        j.key,
                        j.prompt_index,
                        j.prompt.text,
                        json.dumps(list(j.prompt.categories)),
                        int(j.prompt.harmful),
                        j.seed,
                        j.method,
                        j.strength,
                        json.dumps(j.settings, sort_keys=True),
                        j.workflow_hash,
                        PENDING,
                    )
                    for j in jobs
                ],
            )
            return db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] - before

    def states(self, keys: list[str]) -> dict[str, sqlite3.Row]:
        rows = self._db.execute("SELECT * FROM jobs").fetchall()
        wanted = set(keys)
        return {row["key"]: row for row in rows if row["key"] in wanted}

    def mark_running(self, key: str, server: str, prompt_id: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, server = ?, prompt_id = ?, started = ?,"
                " attempts = attempts + (CASE WHEN ? IS NULL THEN 1 ELSE 0 END) WHERE key = ?",
                (RUNNING, server, prompt_id, time.time(), prompt_id, key),
            )

    def mark_pending(self, key: str, reason: str = "") -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, server = NULL, prompt_id = NULL, error = ? WHERE key = ? AND state != ?",
                (PENDING, reason or None, key, DONE),
            )

    def mark_done(self, key: str, server: str, images: list[str]) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, server = ?, images = ?, error = NULL, finished = ? WHERE key = ?",
                (DONE, server, json.dumps(images), time.time(), key),
            )

    def mark_failed(self, key: str, server: str, error: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, server = ?, error = ?, finished = ? WHERE key = ?",
                (FAILED, server, error, time.time(), key),
            )

    def event(self, server: str, kind: str, detail: str = "") -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (time.time(), server, kind, detail))

    def events(self) -> list[sqlite3.Row]:
        return self._db.execute("SELECT * FROM events ORDER BY at").fetchall()

    def add_scores(self, rows: list[tuple[str, int, str, float]]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", rows)

    def scored(self, judge: str) -> set[tuple[str, int]]:
        rows = self._db.execute("SELECT key, image FROM scores WHERE judge = ?", (judge,)).fetchall()
        return {(r[0], r[1]) for r in rows}

    def scores(self) -> list[sqlite3.Row]:
        return self._db.execute("SELECT * FROM scores").fetchall()
