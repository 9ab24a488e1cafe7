"""`manage.py import_dicom PATH...`: import files, folders, ZIP files and DICOMDIRs.

Folders are walked recursively (hidden files and folders skipped); a DICOMDIR's referenced
files are imported once, whether reached through the DICOMDIR or the walk; ZIP members are
read as streams, so nothing is ever extracted to disk. Bad files are reported and skipped.
Exits with status 1 when any file was rejected or conflicted with a stored instance.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
import time
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from pydicom.errors import InvalidDicomError
from tqdm import tqdm

from accounts.models import Organization
from archive.services import IngestBatch, IngestResult, Status
from audit.models import ActorType, Outcome
from audit.services import record

logger = logging.getLogger("lightbox.archive.import")

ZIP_MAGIC = b"PK\x03\x04"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
# Errors that mean "this file could not be read", as opposed to "this is not valid DICOM".
READ_ERRORS = (OSError, zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError)


@dataclass(frozen=True)
class Source:
    """One object to import: a name for the operator, its size, and how to open it."""

    label: str
    size: int
    open: Callable[[], BinaryIO]


def _open_file(path: Path) -> Callable[[], BinaryIO]:
    return lambda: path.open("rb")


def _open_member(archive: Path, name: str) -> Callable[[], BinaryIO]:
    def opener() -> BinaryIO:
        zf = zipfile.ZipFile(archive)
        try:
            member = zf.open(name)
        except BaseException:
            zf.close()
            raise
        member._lightbox_zip = zf  # type: ignore[attr-defined]  # keep the archive open with it
        return member  # type: ignore[return-value]

    return opener


class Sources:
    """Expand the command's paths into Sources, and collect the paths that cannot be used."""

    def __init__(self) -> None:
        self.items: list[Source] = []
        self.unusable: list[tuple[str, str]] = []
        self._seen: set[Path] = set()

    def add_path(self, raw: str) -> None:
        path = Path(raw)
        if not path.exists():
            self.unusable.append((raw, "no such file or folder"))
        elif path.is_dir():
            self._add_folder(path)
        else:
            self._add_file(path, explicit=True)

    def _add_folder(self, folder: Path) -> None:
        files: list[Path] = []
        for root, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files.extend(Path(root) / name for name in sorted(names) if not name.startswith("."))
        # DICOMDIRs first, so the files they list are taken from them (once) and not again.
        for path in files:
            if path.name.upper() == "DICOMDIR":
                self._add_dicomdir(path)
        for path in files:
            if path.name.upper() != "DICOMDIR":
                self._add_file(path, explicit=False)

    def _add_file(self, path: Path, *, explicit: bool) -> None:
        resolved = path.resolve()
        if resolved in self._seen:
            return
        self._seen.add(resolved)
        try:
            with path.open("rb") as fp:
                head = fp.read(132)
            size = path.stat().st_size
        except OSError as exc:
            self.unusable.append((str(path), f"cannot be read ({exc.strerror or type(exc).__name__})"))
            return
        if head[:4] == ZIP_MAGIC and zipfile.is_zipfile(path):
            self._add_zip(path)
        elif explicit and (path.name.upper() == "DICOMDIR" or _is_dicomdir(path, head)):
            self._add_dicomdir(path)
        else:
            self.items.append(Source(str(path), size, _open_file(path)))

    def _add_zip(self, path: Path) -> None:
        try:
            with zipfile.ZipFile(path) as zf:
                members = [info for info in zf.infolist() if not info.is_dir()]
        except READ_ERRORS:
            self.unusable.append((str(path), "is not a readable ZIP file"))
            return
        for info in members:
            name = Path(info.filename).name
            if name.startswith(".") or name.upper() == "DICOMDIR" or "__MACOSX" in info.filename.split("/"):
                continue  # every member is imported anyway; the index adds nothing
            self.items.append(Source(f"{path}:{info.filename}", info.file_size, _open_member(path, info.filename)))

    def _add_dicomdir(self, path: Path) -> None:
        self._seen.add(path.resolve())
        try:
            ds = pydicom.dcmread(path, force=False)
            records = ds.DirectoryRecordSequence
        except (InvalidDicomError, AttributeError, *READ_ERRORS):
            self.unusable.append((str(path), "is not a readable DICOMDIR"))
            return
        base = path.parent.resolve()
        for record_item in records:
            file_id = record_item.get("ReferencedFileID")
            if not file_id:
                continue
            parts = [file_id] if isinstance(file_id, str) else list(file_id)
            target = _find(base, parts)
            if target is None:
                self.unusable.append((f"{path} -> {'/'.join(parts)}", "listed in the DICOMDIR but missing"))
            elif not target.is_relative_to(base):
                # SECURITY: PS3.10 8.5 file IDs are plain components; never follow one out of the folder.
                self.unusable.append((f"{path} -> {'/'.join(parts)}", "points outside the DICOMDIR's folder"))
            else:
                self._add_file(target, explicit=False)


def _is_dicomdir(path: Path, head: bytes) -> bool:
    if head[128:132] != b"DICM":
        return False
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except (InvalidDicomError, *READ_ERRORS):
        return False
    return str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY


def _find(base: Path, parts: list[str]) -> Path | None:
    """Resolve a DICOMDIR file ID under `base`, matching case-insensitively if need be."""
    current = base
    for part in parts:
        if part in ("", ".", ".."):
            return base.parent  # outside: refused by the caller
        candidate = current / part
        if not candidate.exists():
            try:
                candidate = next(p for p in current.iterdir() if p.name.upper() == part.upper())
            except (StopIteration, OSError):
                return None
        current = candidate
    return current.resolve() if current.is_file() else None


# Worker processes inherit the sources by fork; tasks name them by index.
_FORKED: dict = {}
TASK_SIZE = 16  # sources per task: one database transaction each, and one progress step


def _child_start() -> None:
    from django.db import connections

    connections.close_all()  # never share the parent's connection (it was closed before forking anyway)


def _import_task(indexes: list[int]) -> list[tuple[int, IngestResult]]:
    """Run in a worker process: import some sources in one batch, return (index, result) pairs."""
    sources, organization = _FORKED["sources"], _FORKED["organization"]
    settled: list[tuple[int, IngestResult]] = []
    with IngestBatch(organization=organization, source="import", batch_size=len(indexes)) as batch:
        for index in indexes:
            settled.extend(_import_one(batch, sources[index], index))
        settled.extend(batch.flush())
    return settled


def _import_one(batch: IngestBatch, source: Source, label) -> list:
    limit = settings.LIGHTBOX_MAX_INSTANCE_BYTES
    if source.size > limit:
        return batch.add_result(IngestResult(Status.REJECTED, reason=f"the object is larger than the limit of {limit} bytes",
                                             code="too_large", size=source.size), label=label)
    try:
        with source.open() as stream:
            try:
                return batch.add(stream, label=label)
            finally:
                archive = getattr(stream, "_lightbox_zip", None)
                if archive is not None:
                    archive.close()
    except READ_ERRORS as exc:
        logger.warning("could not read %s: %s", source.label, type(exc).__name__)
        reason = f"could not be read ({type(exc).__name__})"
        return batch.add_result(IngestResult(Status.REJECTED, reason=reason, code="unreadable"), label=label)


class Command(BaseCommand):
    help = "Import DICOM files, folders (recursively), ZIP files and DICOMDIRs into the encrypted archive."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--organization", metavar="SLUG", help="Organisation to import into (required if there are several).")
        parser.add_argument("--batch-size", type=int, default=64, help="Objects indexed per database transaction.")
        parser.add_argument("--no-progress", action="store_true", help="Do not draw a progress bar.")
        parser.add_argument("--jobs", type=int, default=min(8, 2 * (os.cpu_count() or 1)),
                            help="Worker processes (default: two per CPU, so one's disk waits overlap the other's "
                                 "parsing). Parsing DICOM holds Python's GIL: processes, not threads, use the cores.")

    def handle(self, *args, paths, organization=None, batch_size=64, no_progress=False, jobs=None, **options):
        org = self._organization(organization)
        sources = Sources()
        for raw in paths:
            sources.add_path(raw)
        results: list[tuple[str, IngestResult]] = [
            (label, IngestResult(Status.REJECTED, reason=reason, code="unreadable")) for label, reason in sources.unusable
        ]
        total_bytes = sum(s.size for s in sources.items)
        jobs = max(1, min(jobs or 1, len(sources.items) // TASK_SIZE))
        if "fork" not in multiprocessing.get_all_start_methods():
            jobs = 1
        started = time.monotonic()
        with self._workers(sources.items, org, jobs) as pool:
            # The progress bar (and its monitor thread) starts after the workers are forked.
            bar = tqdm(total=len(sources.items), unit="file", file=getattr(self.stderr, "_out", sys.stderr),
                       disable=no_progress or None, mininterval=0.5, dynamic_ncols=True)
            done_bytes = 0

            def progress(indexes: list[int]) -> None:
                nonlocal done_bytes
                done_bytes += sum(sources.items[i].size for i in indexes)
                bar.update(len(indexes))
                rate = done_bytes / max(time.monotonic() - started, 1e-6) / 1e6
                bar.set_postfix_str(f"{rate:.1f} MB/s", refresh=False)

            try:
                if pool is not None:
                    settled = self._import_in_processes(pool, len(sources.items), progress)
                else:
                    settled = self._import_here(sources.items, org, batch_size, progress)
            finally:
                bar.close()
        results.extend((sources.items[index].label, result) for index, result in sorted(settled, key=lambda p: p[0]))
        elapsed = max(time.monotonic() - started, 1e-6)
        self._summary(results, len(sources.items), total_bytes, elapsed)
        self._audit(org, results)
        if any(r.status in (Status.REJECTED, Status.CONFLICT, Status.FAILED) for _, r in results):
            raise SystemExit(1)

    def _organization(self, slug: str | None) -> Organization:
        if slug:
            org = Organization.objects.filter(slug=slug).first()
            if org is None:
                raise CommandError(f"no organisation with slug {slug!r}")
            return org
        orgs = list(Organization.objects.all()[:2])
        if len(orgs) != 1:
            raise CommandError("name the organisation to import into with --organization SLUG")
        return orgs[0]

    def _import_here(self, items: list[Source], org, batch_size: int, progress) -> list[tuple[int, IngestResult]]:
        settled: list[tuple[int, IngestResult]] = []
        with IngestBatch(organization=org, source="import", batch_size=batch_size) as batch:
            for index, source in enumerate(items):
                settled.extend(_import_one(batch, source, index))
                progress([index])
            settled.extend(batch.flush())
        return settled

    @contextlib.contextmanager
    def _workers(self, items: list[Source], org, jobs: int):
        """A pool of forked worker processes (None for one job), forked before any thread starts."""
        if jobs <= 1:
            yield None
            return
        from django.db import connections

        from archive.storage import active_data_key

        active_data_key(org)  # create the first data key here, not racing in the workers
        connections.close_all()  # the children open their own connections
        _FORKED.update(sources=items, organization=org)
        try:
            with warnings.catch_warnings():
                # Python warns when forking a process with threads; the only ones here are numpy's
                # idle BLAS threads (fork-safe through pthread_atfork). Ours start after the fork.
                warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
                pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_child_start)
            with pool:
                yield pool
        finally:
            _FORKED.clear()

    def _import_in_processes(self, pool, count: int, progress) -> list[tuple[int, IngestResult]]:
        tasks = [list(range(i, min(i + TASK_SIZE, count))) for i in range(0, count, TASK_SIZE)]
        settled: list[tuple[int, IngestResult]] = []
        for task, done in zip(tasks, pool.imap(_import_task, tasks), strict=True):
            settled.extend(done)
            progress(task)
        return settled

    def _summary(self, results, files: int, total_bytes: int, elapsed: float) -> None:
        counts = Counter(result.status for _, result in results)
        out = self.stdout
        out.write(f"Imported {files} files ({total_bytes / 1e6:.1f} MB) in {elapsed:.1f} s: "
                  f"{files / elapsed:.0f} files/s, {total_bytes / elapsed / 1e6:.1f} MB/s")
        for status, label in ((Status.STORED, "stored"), (Status.DUPLICATE, "duplicates"),
                              (Status.CONFLICT, "conflicts"), (Status.REJECTED, "rejected"), (Status.FAILED, "not stored")):
            if status != Status.FAILED or counts[status]:
                out.write(f"  {label:<11} {counts[status]}")
        for status, title in ((Status.CONFLICT, "Conflicts (a different object is stored under the same SOP Instance UID)"),
                              (Status.REJECTED, "Rejected"),
                              (Status.FAILED, "Not stored (a storage error on this server; import them again)")):
            failed = [(label, r) for label, r in results if r.status == status]
            if failed:
                out.write(f"{title}:")
                for label, result in failed:
                    out.write(f"  {label}: {result.reason}")

    def _audit(self, org, results) -> None:
        counts = Counter(result.status for _, result in results)
        studies = sorted({r.study_instance_uid for _, r in results if r.ok and r.study_instance_uid})
        record(
            action="archive.import",
            actor="manage.py import_dicom",
            actor_type=ActorType.SYSTEM,
            organization=org,
            object_type="study",
            object_id=studies[0] if len(studies) == 1 else "",
            outcome=Outcome.SUCCESS if counts[Status.STORED] or counts[Status.DUPLICATE] else Outcome.FAILURE,
            # PRIVACY: counts and UIDs only; file names can carry patient names, so they stay out.
            details={
                "stored": counts[Status.STORED],
                "duplicates": counts[Status.DUPLICATE],
                "conflicts": counts[Status.CONFLICT],
                "rejected": counts[Status.REJECTED],
                "not_stored": counts[Status.FAILED],
                "study_uids": studies[:1000],
            },
        )
