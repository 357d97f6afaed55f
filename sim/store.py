"""The sweep results store: one SQLite file (stdlib ``sqlite3``), one row per design point.

A row is keyed by ``SweepPoint.key()`` (a hash of the design after overrides, the workload, the mapping and
``model_version()``) and carries its record as canonical JSON plus a SHA-256 checksum over key,
model version and record. Rows are written one transaction each as points finish, so a sweep killed
by SIGINT or SIGKILL loses at most the point that was being written; SQLite's write-ahead log drops a
half-written transaction on the next open.

Nothing is read as a result before it is checked (``ResultStore.open``):

- the file must be an SQLite database (checked from its header bytes, before SQLite opens it, so a
  foreign file is never modified), carry archgen's application id and store format, and be as long as
  its header says (a truncated copy is refused);
- SQLite's own ``quick_check`` must pass (a garbled page is refused);
- every row must parse, have the record fields with the right types and finite non-negative numbers,
  and match its checksum.

Any failure raises SpecError naming the file and the row, and no row of that file is used. With
``repair=True`` bad rows are deleted (they are recomputed by the sweep) and a store SQLite cannot read
is rebuilt from the rows that can still be read and checked; the damaged file is kept beside it.
A file that is not an archgen store is never repaired: it may be someone else's database.

``model_version()`` is derived from the code: a hash of the source files and data tables of every
module that computes a result, so changing the model invalidates stored points without anyone
remembering to bump a string.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from archgen.arch.errors import SpecError, problem

__all__ = ["STORE_NAME", "ResultStore", "model_version", "record_checksum", "MODEL_SOURCES"]

STORE_NAME = "results.sqlite"
_APPLICATION_ID = 0x41524347        # "ARCG" in the SQLite header (offset 68)
_FORMAT = 1                         # PRAGMA user_version (offset 60)
_MAGIC = b"SQLite format 3\x00"

# (package, glob) pairs of everything whose change can change a stored number (a spec's content is
# part of each point's key, so the built-in specs are not listed)
MODEL_SOURCES = (
    ("archgen.sim", "array_model.py"), ("archgen.sim", "array_sim.py"), ("archgen.sim", "energy.py"),
    ("archgen.sim", "results.py"), ("archgen.sim", "sweep_eval.py"), ("archgen.sim", "layer_model.py"),
    ("archgen.sim", "data/*"),
    ("archgen.dataflow", "*.py"), ("archgen.dataflow", "data/*"),
    ("archgen.mappings", "*.py"),
    ("archgen.arch", "einsum.py"), ("archgen.arch", "affine.py"), ("archgen.arch", "spec.py"),
    ("archgen.arch", "mapping_check.py"),
    ("archgen.workloads", "library.py"), ("archgen.workloads", "ops.py"), ("archgen.workloads", "scalesim.py"),
    ("archgen.workloads", "onnx_import.py"), ("archgen.workloads", "data/*"),
)

# record field -> accepted types; numbers are checked finite and non-negative
_RECORD_FIELDS = {"key": str, "spec": str, "overrides": list, "workload": str, "dataflow": str, "fus": int,
                  "clock_mhz": (int, float), "cycles": (int, float), "time_ns": (int, float),
                  "dram_bytes": (int, float), "energy_pj": (int, float), "edp_pj_ns": (int, float),
                  "area_mm2": (int, float), "model": str}
_OPTIONAL_FIELDS = {"mapper": str}     # absent means the default mapper (heuristic)
_NUMBERS = ("fus", "clock_mhz", "cycles", "time_ns", "dram_bytes", "energy_pj", "edp_pj_ns", "area_mm2")

_SCHEMA = """
CREATE TABLE points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    record TEXT NOT NULL,
    checksum TEXT NOT NULL
);
"""


@lru_cache(maxsize=1)
def model_version() -> str:
    """A short hash of the model's code and data tables (see MODEL_SOURCES)."""
    from importlib import import_module
    h = hashlib.sha256()
    for package, pattern in MODEL_SOURCES:
        root = Path(import_module(package).__file__).parent
        for path in sorted(root.glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
                h.update(path.read_bytes())
                h.update(b"\0")
    return "m-" + h.hexdigest()[:16]


def _canonical(record: dict) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)


def record_checksum(key: str, model: str, record_json: str) -> str:
    return hashlib.sha256(f"{key}\0{model}\0{record_json}".encode()).hexdigest()


def _decode_row(row: tuple) -> tuple[tuple | None, str | None]:
    """(id, key, model, record, checksum) as text, from a row read with ``text_factory=bytes``."""
    row_id, *cols = row
    if not all(isinstance(c, bytes) for c in cols):
        return None, "a column has the wrong type"
    try:
        return (row_id, *(c.decode("utf-8") for c in cols)), None
    except UnicodeDecodeError:
        return None, "a column is not UTF-8 text (garbled)"


def _record_problem(key: str, model: str, text: str, checksum: str) -> str | None:
    """Why a row is not a valid record of this store, or None."""
    if not isinstance(text, str) or not isinstance(key, str) or not isinstance(model, str):
        return "a column has the wrong type"
    if not isinstance(checksum, str) or checksum != record_checksum(key, model, text):
        return "checksum mismatch: the row was edited or corrupted after it was written"
    try:
        rec = json.loads(text)
    except ValueError:
        return "the record is not JSON"
    if not isinstance(rec, dict):
        return "the record is not a JSON object"
    missing = [k for k in _RECORD_FIELDS if k not in rec]
    if missing:
        return f"the record lacks the fields {', '.join(missing)}"
    for k, kind in _RECORD_FIELDS.items():
        if not isinstance(rec[k], kind) or isinstance(rec[k], bool):
            return f"field {k!r} has the wrong type"
    for k, kind in _OPTIONAL_FIELDS.items():
        if k in rec and not isinstance(rec[k], kind):
            return f"field {k!r} has the wrong type"
    for k in _NUMBERS:
        if not (math.isfinite(rec[k]) and rec[k] >= 0):
            return f"field {k!r} is not a finite non-negative number"
    if rec["key"] != key or rec["model"] != model:
        return "the record's key or model does not match its row"
    return None


def _header_problem(path: Path) -> tuple[str, bool] | None:
    """(why the file is not a readable archgen store, whether --repair may rebuild it), from its bytes."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(100)
    if size == 0:
        return "the file is empty, not an archgen sweep store", False
    if not head.startswith(_MAGIC):
        return "not an SQLite database, so not an archgen sweep store (a foreign or garbled file)", False
    if len(head) < 100:
        return f"truncated: {size} bytes, shorter than an SQLite header", True
    app_id = int.from_bytes(head[68:72], "big")
    if app_id != _APPLICATION_ID:
        return "an SQLite database of another program, not an archgen sweep store", False
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    counter_ok = head[24:28] == head[92:96]
    if page < 512 or page & (page - 1):
        return "garbled: the header's page size is not a power of two", True
    if size % page or (counter_ok and pages and size < pages * page):
        expect = f", its header says {pages * page}" if counter_ok and pages else ""
        return f"truncated or garbled: {size} bytes{expect} (pages of {page} bytes)", True
    return None


class ResultStore:
    """Checked rows of one store file; ``put`` commits one row per transaction."""

    def __init__(self, path: Path, conn: sqlite3.Connection | None, rows: dict[str, dict], notes: list[str]):
        self.path, self._conn, self.rows, self.notes = path, conn, rows, notes

    # ---- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, repair: bool = False) -> "ResultStore":
        """Read and check ``path`` if it exists (nothing is created until the first ``put``)."""
        path = Path(path)
        if path.is_dir():
            raise SpecError([problem("--out", f"{path} is a directory, not a sweep results store; remove it or "
                                     "choose another --out", str(path))])
        if not path.exists():
            if path.is_symlink():
                raise SpecError([problem("--out", f"{path} is a dangling symbolic link; remove it", str(path))])
            return cls(path, None, {}, [])
        try:
            header = _header_problem(path)
        except OSError as err:
            raise SpecError([problem("--out", f"cannot read the results store {path}: {err.strerror}",
                                     str(path))]) from None
        if header is not None:
            why, repairable = header
            if repair and repairable:
                return cls._rebuild(path, why)
            fix = ("Rerun with --repair to rebuild it from the rows that can still be read, or delete the file"
                   if repairable else "move it away or choose another --out (--repair never overwrites it)")
            raise SpecError([problem("--out", f"{path}: {why}; nothing from it was used. {fix}")])
        conn = None
        try:
            conn = cls._connect(path)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != _FORMAT:
                conn.close()
                raise SpecError([problem("--out", f"{path}: store format {version}, this archgen reads format "
                                         f"{_FORMAT}; nothing from it was used. Use a new --out")])
            check = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise sqlite3.DatabaseError(check[0])
            conn.text_factory = bytes      # a garbled column is reported by row, not as a decode failure
            raw = conn.execute("SELECT id, key, model, record, checksum FROM points ORDER BY id").fetchall()
            conn.text_factory = str
        except sqlite3.DatabaseError as err:
            if conn is not None:
                conn.close()
            if isinstance(err, sqlite3.OperationalError) and ("locked" in str(err) or "busy" in str(err)):
                raise SpecError([problem("--out", f"{path}: in use by another process (SQLite: {err}); wait for it "
                                         "to finish or choose another --out")]) from None
            if repair:
                return cls._rebuild(path, f"SQLite cannot read it ({err})")
            raise SpecError([problem("--out", f"{path}: corrupt: SQLite cannot read it ({err}); nothing from it was "
                                     "used. Rerun with --repair to rebuild it from the rows that can still be "
                                     "read, or delete the file")]) from None
        return cls._checked(path, conn, raw, repair)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        # WAL with synchronous=NORMAL: a commit is an append to the log without fsync, so storing a point
        # costs microseconds; a killed process loses nothing committed, a power cut at most the last few
        # commits (recomputed on the next run), and the file stays consistent either way
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @classmethod
    def _checked(cls, path: Path, conn: sqlite3.Connection, raw, repair: bool) -> "ResultStore":
        current = model_version()
        rows, bad, old = {}, [], 0
        for row in raw:
            decoded, why = _decode_row(row)
            if decoded is None:
                bad.append((row[0], row[1].decode("utf-8", "replace") if isinstance(row[1], bytes) else "?", why))
                continue
            row_id, key, model, text, checksum = decoded
            why = _record_problem(key, model, text, checksum)
            if why is not None:
                bad.append((row_id, key, why))
            elif model != current:
                old += 1            # another model version: kept in the file, never read as a result
            else:
                rows[key] = json.loads(text)
        notes = []
        if old:
            notes.append(f"{path}: {old} row(s) computed by another model version are ignored; those points are "
                         "recomputed")
        if bad and not repair:
            conn.close()
            row_id, key, why = bad[0]
            more = f" (and {len(bad) - 1} more bad row(s))" if len(bad) > 1 else ""
            raise SpecError([problem("--out", f"{path} row {row_id} (key {str(key)[:20]!r}): {why}{more}; nothing "
                                     "from it was used. Rerun with --repair to delete the bad rows and recompute "
                                     "them, or delete the file")])
        if bad:
            with _transaction(conn, path):
                conn.executemany("DELETE FROM points WHERE id = ?", [(b[0],) for b in bad])
            notes += [f"{path} row {row_id}: deleted ({why}); recomputed" for row_id, _k, why in bad]
        return cls(path, conn, rows, notes)

    @classmethod
    def _rebuild(cls, path: Path, why: str) -> "ResultStore":
        """--repair of a file SQLite cannot read: salvage checked rows into a fresh store beside it."""
        damaged = path.with_name(path.name + ".damaged")
        os.replace(path, damaged)
        for suffix in ("-wal", "-shm", "-journal"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, damaged.with_name(damaged.name + suffix))
        # without a log beside it, read the damaged copy as immutable: SQLite then creates no files
        wal = damaged.with_name(damaged.name + "-wal").exists()
        salvaged = []
        try:
            uri = f"file:{quote(str(damaged))}?mode=ro{'' if wal else '&immutable=1'}"
            conn = sqlite3.connect(uri, uri=True)
            conn.text_factory = bytes
            try:
                salvaged = conn.execute("SELECT id, key, model, record, checksum FROM points ORDER BY id").fetchall()
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            salvaged = []
        decoded = [d for d, _why in map(_decode_row, salvaged) if d is not None]
        good = [r for r in decoded if _record_problem(r[1], r[2], r[3], r[4]) is None]
        store = cls(path, None, {}, [f"{path}: {why}; kept as {damaged.name}, rebuilt with the {len(good)} row(s) "
                                     "that could be read and checked; the rest are recomputed"])
        for _id, key, model, text, _checksum in good:
            store._insert(key, model, text)
            if model == model_version():
                store.rows[key] = json.loads(text)
        return store

    # ---- writing ---------------------------------------------------------------------------------
    def _create(self) -> None:
        """Create the file atomically: schema written to a temporary file, then renamed into place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={_FORMAT}")
            conn.executescript(_SCHEMA)
        finally:
            conn.close()
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._conn = self._connect(self.path)

    def _insert(self, key: str, model: str, text: str) -> None:
        if self._conn is None:
            self._create()
        with _transaction(self._conn, self.path):
            self._conn.execute("INSERT OR REPLACE INTO points (key, model, record, checksum) VALUES (?, ?, ?, ?)",
                               (key, model, text, record_checksum(key, model, text)))

    def put(self, record: dict) -> dict:
        """Store one finished point (its own transaction); returns the record as it will be read back."""
        text = _canonical(record)
        self._insert(record["key"], record["model"], text)
        self.rows[record["key"]] = json.loads(text)
        return self.rows[record["key"]]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (KeyboardInterrupt included). Another
    process writing the same store is waited for (30 s), then reported, never called corruption."""

    def __init__(self, conn, path):
        self.conn, self.path = conn, path

    def __enter__(self):
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            raise SpecError([problem("--out", f"{self.path}: in use by another process (SQLite: {err}); wait for it "
                                     "to finish or choose another --out")]) from None

    def __exit__(self, kind, *rest):
        self.conn.execute("ROLLBACK" if kind else "COMMIT")
