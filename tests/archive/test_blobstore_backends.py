"""The local filesystem storage backend under the blob store (Django-free)."""

from __future__ import annotations

import gc
import os
import secrets
import stat

import pytest

from archive.blobstore import BlobNotFound, InvalidBlobName, LocalFileBackend


@pytest.fixture
def backend(tmp_path):
    return LocalFileBackend(tmp_path / "blobs")


def _name():
    return secrets.token_hex(16)


def _files(backend):
    return sorted(path for path in backend.root.rglob("*") if path.is_file())


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    "name",
    [
        "../../../etc/passwd",
        "ab/cd/" + "a" * 26,
        "/" + "a" * 31,
        "A" * 32,  # upper case is not the generated form
        "a" * 31,
        "a" * 33,
        "a" * 31 + "\x00",
        "a" * 31 + "\n",
        "..",
        "",
    ],
)
def test_names_not_of_the_generated_form_are_rejected(backend, name):
    for call in (backend.open_write, backend.open_read, backend.size, backend.delete, backend.exists):
        with pytest.raises(InvalidBlobName):
            call(name)
    assert _files(backend) == []


def test_blobs_are_sharded_0600_files_in_0700_directories(backend):
    name = _name()
    with backend.open_write(name) as handle:
        handle.write(b"ciphertext")
    path = backend.root / name[:2] / name[2:4] / name
    assert _files(backend) == [path]
    assert _mode(path) == 0o600
    for directory in (backend.root, path.parent.parent, path.parent):
        assert _mode(directory) == 0o700
    assert backend.size(name) == 10
    with backend.open_read(name) as file:
        assert file.seekable()
        file.seek(4)
        assert file.read() == b"ertext"


def test_uncommitted_write_is_invisible(backend):
    name = _name()
    handle = backend.open_write(name)
    handle.write(b"partial")
    assert not backend.exists(name)
    assert list(backend.iter_names()) == []
    handle.commit()
    assert backend.exists(name)
    assert list(backend.iter_names()) == [name]


def test_aborted_write_leaves_no_file(backend):
    with pytest.raises(RuntimeError):
        with backend.open_write(_name()) as handle:
            handle.write(b"x" * 1000)
            raise RuntimeError("client went away")
    handle.abort()  # idempotent
    assert _files(backend) == []


def test_dropped_write_handle_leaves_no_file(backend):
    handle = backend.open_write(_name())
    handle.write(b"x")
    del handle
    gc.collect()
    assert _files(backend) == []


def test_iter_names_lists_only_committed_blobs_of_the_generated_form(backend):
    names = sorted(_name() for _ in range(3))
    for name in names:
        with backend.open_write(name) as handle:
            handle.write(b"x")
    backend.open_write(_name()).write(b"in progress")  # a temp file, kept open
    (backend.root / names[0][:2] / names[0][2:4] / "stray.txt").write_bytes(b"x")
    (backend.root / "README").write_bytes(b"x")
    assert sorted(backend.iter_names()) == names


def test_missing_blob_raises_blob_not_found(backend):
    name = _name()
    for call in (backend.open_read, backend.size, backend.delete):
        with pytest.raises(BlobNotFound):
            call(name)
    assert not backend.exists(name)


def test_delete_removes_the_blob(backend):
    name = _name()
    with backend.open_write(name) as handle:
        handle.write(b"x")
    backend.delete(name)
    assert not backend.exists(name)
    assert list(backend.iter_names()) == []


def test_symlink_in_place_of_a_blob_is_not_followed(backend, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"not a blob")
    name = _name()
    shard = backend.root / name[:2] / name[2:4]
    shard.mkdir(parents=True)
    os.symlink(secret, shard / name)
    with pytest.raises(OSError):
        backend.open_read(name)
    assert list(backend.iter_names()) == []


def _record_fsyncs(monkeypatch):
    """Patch os.fsync in the backend to record (path, thread) for each call, then really sync."""
    from archive.blobstore import backends

    calls = []
    real_fsync = os.fsync

    def fsync(fd):
        import threading

        calls.append((os.readlink(f"/proc/self/fd/{fd}"), threading.current_thread().name))
        real_fsync(fd)

    monkeypatch.setattr(backends.os, "fsync", fsync)
    return calls


def _write(backend, name, durable):
    with backend.open_write(name, durable=durable) as handle:
        handle.write(b"ciphertext " + name.encode())


def test_sync_flushes_every_file_then_each_directory_once(backend, monkeypatch):
    names = [_name() for _ in range(6)]
    names.append(names[0][:4] + _name()[4:])  # a second blob in the first one's directory
    for name in names:
        _write(backend, name, durable=False)
    calls = _record_fsyncs(monkeypatch)

    backend.sync(names)

    files = {str(backend.root / n[:2] / n[2:4] / n) for n in names}
    directories = {str(backend.root / n[:2] / n[2:4]) for n in names}
    synced = [path for path, _ in calls]
    assert sorted(synced) == sorted(files | directories)  # each directory once, not per file
    # A directory entry is flushed only after the files it names.
    assert set(synced[: len(files)]) == files
    # The calls of a step were issued together (from the pool), not one after another.
    assert len({thread for _, thread in calls}) > 1
    assert all(thread.startswith("blob-fsync") for _, thread in calls)


def test_sync_of_one_blob_needs_no_pool(backend, monkeypatch):
    name = _name()
    _write(backend, name, durable=False)
    calls = _record_fsyncs(monkeypatch)
    backend.sync([name])
    assert [path for path, _ in calls] == [str(backend.root / name[:2] / name[2:4] / name),
                                           str(backend.root / name[:2] / name[2:4])]
    backend.sync([])
    assert len(calls) == 2


def test_sync_of_a_missing_blob_raises_after_flushing_the_others(backend, monkeypatch):
    present = [_name() for _ in range(3)]
    for name in present:
        _write(backend, name, durable=False)
    calls = _record_fsyncs(monkeypatch)
    with pytest.raises(FileNotFoundError):
        backend.sync([present[0], _name(), *present[1:]])
    synced = {path for path, _ in calls}
    assert {str(backend.root / n[:2] / n[2:4] / n) for n in present} <= synced


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_a_forked_child_can_sync_after_the_parent_used_the_pool(backend):
    # import_dicom forks its workers; the parent's pool threads do not exist in a child.
    import multiprocessing

    names = [_name() for _ in range(3)]
    for name in names:
        _write(backend, name, durable=False)
    backend.sync(names)  # the parent's pool now has idle threads

    context = multiprocessing.get_context("fork")
    result = context.Queue()
    child_names = [_name() for _ in range(3)]
    child = context.Process(target=_sync_many_in_child, args=(backend, child_names, result))
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in sync")
    assert child.exitcode == 0
    assert result.get(timeout=5) == "synced"
    assert all(backend.exists(name) for name in child_names)


def _sync_many_in_child(backend, names, result):
    for name in names:
        _write(backend, name, durable=False)
    backend.sync(names)
    result.put("synced")
