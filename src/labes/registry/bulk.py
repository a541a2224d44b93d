"""The machinery of bulk imports: stream a CSV, validate each row, upsert in chunks, report bad rows.

The file is read row by row and written in chunks, each chunk one transaction, so memory stays flat
and an interrupted import re-run reaches the same final state (every write is an idempotent upsert).
A chunk the database refuses (say, a CIN already used by another person) is replayed row by row with a
savepoint per row, so only the offending rows go to the error file.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import multiprocessing
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from labes.db import Base, make_engine, session_scope, upsert
from labes.security import audit
from labes.security.audit import Actor

CHUNK_ROWS = 5000


class RowError(ValueError):
    """A bad value in one row: which field and why."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field_name
        self.reason = reason


class RetryLater(RowError):
    """A reference not found yet: another chunk, written in parallel, may create it."""


class FileError(ValueError):
    """A file that cannot be imported at all (unreadable, wrong header)."""


Bundle = dict[type[Base], list[dict[str, Any]]]


@dataclass(frozen=True)
class RawChunk:
    """Consecutive records of the file, undecoded: what the reading process hands a worker."""

    source: str  # the file's name, for error messages
    header: tuple[str, ...]
    first_line: int
    data: bytes


def _cell(record: bytes, index: int) -> str:
    """Return the `index`-th cell of one CSV record (the boundary test: cheap when nothing is quoted)."""
    if b'"' not in record:
        cells = record.rstrip(b"\r\n").split(b",", index + 1)
        return cells[index].decode("utf-8", "replace").strip() if index < len(cells) else ""
    cells = next(csv.reader([record.decode("utf-8", "replace")]), [])
    return cells[index].strip() if index < len(cells) else ""


@dataclass
class ChunkOutcome:
    rows: int = 0
    loaded: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[int, str, str]] = field(default_factory=list)
    deferred: list[tuple[int, dict[str, str]]] = field(default_factory=list)


@dataclass
class ImportResult:
    kind: str
    rows: int = 0
    loaded: int = 0
    rejected: int = 0
    errors_path: Path | None = None
    sha256: str = ""
    counts: dict[str, int] = field(default_factory=dict)


def parse_date(row: dict[str, str], name: str, *, required: bool = False) -> date | None:
    """Return the ISO date in `row[name]`, or None when empty and not required."""
    value = row.get(name, "").strip()
    if not value:
        if required:
            raise RowError(name, "is required")
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise RowError(name, f"{value!r} is not a date (YYYY-MM-DD)") from None


def required(row: dict[str, str], name: str, *, max_length: int = 200) -> str:
    """Return the non-empty value of `row[name]`."""
    value = row.get(name, "").strip()
    if not value:
        raise RowError(name, "is required")
    if len(value) > max_length:
        raise RowError(name, f"is longer than {max_length} characters")
    return value


def optional(row: dict[str, str], name: str, *, max_length: int = 200) -> str | None:
    """Return the value of `row[name]` or None when empty."""
    value = row.get(name, "").strip()
    if len(value) > max_length:
        raise RowError(name, f"is longer than {max_length} characters")
    return value or None


def choice(row: dict[str, str], name: str, choices: tuple[str, ...], *, default: str | None = None) -> str:
    """Return `row[name]` if it is one of `choices`."""
    value = row.get(name, "").strip() or default
    if value is None:
        raise RowError(name, "is required")
    if value not in choices:
        raise RowError(name, f"{value!r} is not one of {', '.join(choices)}")
    return value


def flag(row: dict[str, str], name: str) -> bool:
    """Return a 0/1 cell as a bool."""
    value = row.get(name, "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise RowError(name, f"{value!r} is not 0 or 1")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class BulkImport(ABC):
    """One import run. Subclasses define the columns and `parse` (a row → rows per table)."""

    kind = ""
    columns: tuple[str, ...] = ()
    optional_columns: tuple[str, ...] = ()  # a file may leave these out: what it does not carry is left as it is
    tables: tuple[type[Base], ...] = ()  # in foreign-key order
    boundary: tuple[str, str] | None = None  # (column, value): a chunk may start only at such a record

    def __init__(self, factory: sessionmaker[Session], *, actor: Actor) -> None:
        self.factory = factory
        self.actor = actor

    # Subclass hooks -------------------------------------------------------------------------
    @abstractmethod
    def parse(self, row: dict[str, str]) -> Bundle:
        """Return the rows to upsert, per table, for one CSV row."""

    def check_chunk(self, session: Session, bundles: list[tuple[int, Bundle]]) -> dict[int, RowError]:
        """Return errors for rows whose references do not exist (checked in one query per chunk)."""
        return {}

    def start_chunk(self) -> None:
        """Forget what the previous chunk taught (a chunk starts on a boundary record)."""

    # Driver ---------------------------------------------------------------------------------
    def _records(self, raw: BinaryIO) -> Iterator[tuple[int, bytes]]:
        """Yield (number of physical lines, bytes) per CSV record; a quoted cell may hold line breaks.

        A record ends at a line break outside quotes, that is where the count of quote characters so far is
        even (RFC 4180 escapes a quote by doubling it). Nothing else is decoded here: the workers parse.
        """
        parts: list[bytes] = []
        quotes = 0
        for part in raw:  # each line's quotes counted once: a stray quote costs memory, never quadratic time
            parts.append(part)
            quotes += part.count(b'"')
            if quotes % 2 == 0:
                yield len(parts), b"".join(parts)
                parts, quotes = [], 0
        if parts:
            yield len(parts), b"".join(parts)

    def _chunks(self, path: Path) -> Iterator[RawChunk]:
        """Cut the file into chunks of about CHUNK_ROWS records, each starting on a boundary record."""
        with path.open("rb") as raw:
            records = self._records(raw)
            header_lines, header_bytes = next(records, (1, b""))
            self.position = len(header_bytes)
            header = next(csv.reader([self._decode(header_bytes.removeprefix(b"\xef\xbb\xbf"), path.name, 1)]), [])
            self._check_header(path, header)
            header = tuple(header)
            at = header.index(self.boundary[0]) if self.boundary else None
            first, line, parts, rows = header_lines + 1, header_lines + 1, [], 0
            for lines, record in records:
                if rows >= CHUNK_ROWS and (at is None or _cell(record, at) == self.boundary[1]):
                    yield RawChunk(path.name, header, first, b"".join(parts))
                    first, parts, rows = line, [], 0
                parts.append(record)
                rows += 1
                line += lines
                self.position += len(record)
            if parts:
                yield RawChunk(path.name, header, first, b"".join(parts))

    @staticmethod
    def _decode(data: bytes, source: str, first_line: int) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = first_line + data.count(b"\n", 0, exc.start)
            raise FileError(f"{source}: not UTF-8 text (line {line}); save the file as UTF-8.") from None

    def read_chunk(self, chunk: RawChunk) -> list[tuple[int, dict[str, str]]]:
        """Parse a chunk's CSV: (line number, cells by column) per record, its last physical line numbering it."""
        reader = csv.reader(io.StringIO(self._decode(chunk.data, chunk.source, chunk.first_line), newline=""))
        header, width, offset = chunk.header, len(chunk.header), chunk.first_line - 1
        rows = []
        try:
            for values in reader:
                row = dict(zip(header, values))
                if len(values) != width:
                    row["__extra__" if len(values) > width else "__short__"] = ""
                rows.append((offset + reader.line_num, row))
        except csv.Error as exc:
            raise FileError(f"{chunk.source}, line {offset + reader.line_num}: {exc}") from None
        return rows

    def _check_header(self, path: Path, header: list[str]) -> None:
        unknown = [c for c in header if c not in self.columns and c not in self.optional_columns]
        missing = [c for c in self.columns if c not in header]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown column(s): {', '.join(unknown)}")
            if missing:
                parts.append(f"missing column(s): {', '.join(missing)}")
            raise FileError(f"{path.name}: the header does not match the {self.kind} format ({'; '.join(parts)}); "
                            f"see docs/csv-formats.md.")

    def _parallel(self, chunks: Iterator[list], workers: int) -> Iterator[ChunkOutcome]:
        bind = self.factory.kw["bind"]
        url = bind.url.render_as_string(hide_password=False)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                                 initargs=(type(self), url, self.actor)) as pool:
            in_flight: deque = deque()
            for chunk in chunks:
                in_flight.append(pool.submit(_worker_chunk, chunk))  # bytes: cheap to hand over
                if len(in_flight) >= 2 * workers:  # bounded: memory stays flat however big the file
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()

    def run(self, path: Path, *, errors_path: Path | None = None, workers: int = 1,
            progress: Callable[[int, int], None] | None = None) -> ImportResult:
        """Import `path` with `workers` processes; bad rows go to `errors_path` (default: next to the file)."""
        path = Path(path)
        if not path.is_file():
            raise FileError(f"No such file: {path}")
        total_bytes = path.stat().st_size
        errors_path = errors_path or path.with_name(path.stem + ".errors.csv")
        result = ImportResult(self.kind, errors_path=errors_path, sha256=_file_sha256(path))
        self.position = 0
        deferred: list[tuple[int, dict[str, str]]] = []
        with errors_path.open("w", newline="", encoding="utf-8") as err_handle:
            errors = csv.writer(err_handle)
            errors.writerow(["row", "field", "reason"])

            def merge(outcome: ChunkOutcome) -> None:
                result.rows += outcome.rows
                result.loaded += outcome.loaded
                result.rejected += len(outcome.errors)
                errors.writerows(outcome.errors)
                for table, n in outcome.counts.items():
                    result.counts[table] = result.counts.get(table, 0) + n
                deferred.extend(outcome.deferred)

            chunks = self._chunks(path)
            outcomes = (self._parallel(chunks, workers) if workers > 1
                        else (self.load_chunk(chunk) for chunk in chunks))
            for outcome in outcomes:
                merge(outcome)
                if progress:
                    progress(self.position, total_bytes)
            if deferred:  # rows whose references may have been written by another chunk meanwhile
                outcome = self.process_chunk(sorted(deferred, key=lambda item: item[0]), final=True)
                outcome.rows = 0
                merge(outcome)
            if progress:
                progress(total_bytes, total_bytes)
        if result.rejected == 0:
            errors_path.unlink()
            result.errors_path = None
        with session_scope(self.factory) as session:
            # Fresh statistics, so the planner uses the indexes on tables that just grew.
            for model in self.tables:
                session.execute(text(f"ANALYZE {model.__tablename__}"))
            audit.record(session, actor=self.actor, action=f"registry:import:{self.kind}", entity_type="import",
                         entity_id=path.name, after={"sha256": result.sha256, "rows": result.rows,
                                                     "loaded": result.loaded, "rejected": result.rejected,
                                                     "counts": result.counts})
        return result

    def load_chunk(self, chunk: RawChunk) -> ChunkOutcome:
        """Read and write one raw chunk.

        The cyclic garbage collector waits meanwhile: a chunk's hundreds of thousands of small objects hold
        no cycles, and collecting while they accumulate cost a third of the parsing. They are freed, by
        reference counting, when the chunk is done.
        """
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self.process_chunk(self.read_chunk(chunk))
        finally:
            if enabled:
                gc.enable()

    def process_chunk(self, chunk: list[tuple[int, dict[str, str]]], *, final: bool = False) -> ChunkOutcome:
        """Parse, check and write one chunk in one transaction; return what happened to each row."""
        outcome = ChunkOutcome(rows=len(chunk))
        rejected: dict[int, RowError] = {}
        parsed: list[tuple[int, Bundle]] = []
        raw_by_line = dict(chunk)
        self.start_chunk()
        for line, row in chunk:
            try:
                if "__extra__" in row:
                    raise RowError("row", "has more cells than the header has columns")
                if "__short__" in row:
                    raise RowError("row", "has fewer cells than the header has columns")
                parsed.append((line, self.parse(row)))
            except RowError as exc:
                rejected[line] = exc
        with session_scope(self.factory) as session:
            if session.get_bind().dialect.name == "postgresql":
                # A chunk's COMMIT does not wait for its WAL to reach the disk: a crash loses at most the last
                # chunks, which a re-run writes again (every write is an upsert), and the run's closing audit
                # event commits normally, which flushes every chunk's WAL before it.
                session.execute(text("SET LOCAL synchronous_commit = off"))
            for line, exc in self.check_chunk(session, parsed).items():
                if isinstance(exc, RetryLater) and not final:
                    outcome.deferred.append((line, raw_by_line[line]))
                else:
                    rejected[line] = exc
            later = {line for line, _ in outcome.deferred}
            good = [(line, bundle) for line, bundle in parsed if line not in rejected and line not in later]
            try:
                with session.begin_nested():
                    self._upsert(session, [bundle for _, bundle in good])
            except IntegrityError:
                good = self._write_row_by_row(session, good, rejected)
        outcome.loaded = len(good)
        for _, bundle in good:
            for model, rows in bundle.items():
                outcome.counts[model.__tablename__] = outcome.counts.get(model.__tablename__, 0) + len(rows)
        outcome.errors = [(line, exc.field, exc.reason) for line, exc in sorted(rejected.items())]
        return outcome

    def _upsert(self, session: Session, bundles: list[Bundle]) -> None:
        for model in self.tables:
            rows: dict[Any, dict[str, Any]] = {}
            for bundle in bundles:
                for item in bundle.get(model, ()):
                    # The last mention of a row in a chunk wins, column by column: a column only some rows carry
                    # (a member's bank account, not the same person's row as someone's dependant) is kept.
                    rows[item["id"]] = {**rows.get(item["id"], {}), **item}
            shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for key in sorted(rows):  # in key order: index pages in turn
                shapes.setdefault(tuple(rows[key]), []).append(rows[key])
            for same_columns in shapes.values():  # one statement names one set of columns
                upsert(session, model, same_columns)

    def _write_row_by_row(self, session: Session, chunk: list[tuple[int, Bundle]],
                          rejected: dict[int, RowError]) -> list[tuple[int, Bundle]]:
        written = []
        for line, bundle in chunk:
            try:
                with session.begin_nested():
                    self._upsert(session, [bundle])
                written.append((line, bundle))
            except IntegrityError as exc:
                rejected[line] = RowError(*self.explain(exc))
        return written

    def explain(self, exc: IntegrityError) -> tuple[str, str]:
        """Turn a database refusal into (field, reason) for the error file."""
        message = str(exc.orig).lower()
        if "cin" in message:
            return "cin", "this CIN already belongs to another person in the registry"
        if "person_id" in message:
            return "cin", "this person is already the insured member of another family"
        if "foreign key" in message:
            return "row", "refers to a record that does not exist"
        return "row", "refused by the database: " + str(exc.orig).splitlines()[0][:200]


_worker: dict[str, BulkImport] = {}


def _worker_init(cls: type[BulkImport], url: str, actor: Actor) -> None:
    _worker["importer"] = cls(sessionmaker(bind=make_engine(url), expire_on_commit=False), actor=actor)


def _worker_chunk(chunk: RawChunk) -> ChunkOutcome:
    return _worker["importer"].load_chunk(chunk)
