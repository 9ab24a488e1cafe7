"""Key-encryption keys: the local key-file provider and KEK rotation (Django-free)."""

from __future__ import annotations

import stat

import pytest

from archive.blobstore import (
    BlobStoreError,
    IntegrityError,
    KeyNotFound,
    LocalFileKeyProvider,
    WrappedKey,
    generate_dek,
    rotate_kek,
)


@pytest.fixture
def provider(tmp_path):
    return LocalFileKeyProvider(tmp_path / "keys")


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_first_use_creates_a_0600_kek_file_in_a_0700_directory(provider):
    kek_id = provider.current_kek_id()
    kek_file = provider.directory / f"{kek_id}.kek"
    assert _mode(provider.directory) == 0o700
    assert _mode(kek_file) == 0o600
    assert len(kek_file.read_bytes()) == 32
    assert provider.current_kek_id() == kek_id


def test_rotated_kek_files_are_0600(provider):
    provider.current_kek_id()
    provider.rotate()
    files = list(provider.directory.glob("*.kek"))
    assert len(files) == 2
    assert all(_mode(path) == 0o600 for path in files)


def test_wrapped_dek_unwraps_to_the_same_key_and_hides_it(provider):
    dek = generate_dek()
    wrapped = provider.wrap(dek)
    assert wrapped.kek_id == provider.current_kek_id()
    assert dek not in wrapped.blob
    assert provider.unwrap(wrapped) == dek


def test_second_provider_on_the_same_directory_shares_the_kek(provider):
    wrapped = provider.wrap(dek := generate_dek())
    again = LocalFileKeyProvider(provider.directory)
    assert again.current_kek_id() == wrapped.kek_id
    assert again.unwrap(wrapped) == dek


def test_kek_rotation_rewraps_deks_and_old_kek_unwraps_until_retired(provider):
    deks = {name: generate_dek() for name in ("org-1", "org-2")}
    records = {name: provider.wrap(dek) for name, dek in deks.items()}
    old_records = dict(records)
    old_kek = provider.current_kek_id()

    report = rotate_kek(provider, list(records.items()), records.__setitem__)

    assert report.new_kek_id == provider.current_kek_id() != old_kek
    assert (report.rewrapped, report.old_kek_ids, report.retired) == (2, {old_kek}, set())
    for name, dek in deks.items():
        assert records[name].kek_id == report.new_kek_id
        assert provider.unwrap(records[name]) == dek
        assert provider.unwrap(old_records[name]) == dek  # old KEK kept until done

    provider.retire(old_kek)
    with pytest.raises(KeyNotFound):
        provider.unwrap(old_records["org-1"])
    assert provider.unwrap(records["org-1"]) == deks["org-1"]
    assert provider.kek_ids() == [report.new_kek_id]


def test_interrupted_kek_rotation_resumes_without_a_new_kek(provider):
    deks = [generate_dek() for _ in range(3)]
    records = dict(enumerate(provider.wrap(dek) for dek in deks))
    old_kek = provider.current_kek_id()
    saved = []

    def save_then_crash(key, wrapped):
        if len(saved) == 1:
            raise KeyboardInterrupt
        saved.append(key)
        records[key] = wrapped

    with pytest.raises(KeyboardInterrupt):
        rotate_kek(provider, list(records.items()), save_then_crash)
    new_kek = provider.current_kek_id()
    assert old_kek in provider.kek_ids()  # nothing retired mid-way

    report = rotate_kek(provider, list(records.items()), records.__setitem__, new_kek=False, retire_old=True)
    assert report.new_kek_id == new_kek
    assert (report.rewrapped, report.retired) == (2, {old_kek})
    assert [provider.unwrap(records[i]) for i in range(3)] == deks
    assert provider.kek_ids() == [new_kek]


def test_retiring_the_current_kek_is_refused(provider):
    with pytest.raises(BlobStoreError):
        provider.retire(provider.current_kek_id())


def test_tampered_wrapped_key_is_rejected(provider):
    wrapped = provider.wrap(generate_dek())
    for position in range(len(wrapped.blob)):
        forged = bytearray(wrapped.blob)
        forged[position] ^= 0x01
        with pytest.raises(IntegrityError):
            provider.unwrap(WrappedKey(wrapped.kek_id, bytes(forged)))


def test_wrapped_key_relabelled_with_another_kek_id_is_rejected(provider):
    first = provider.current_kek_id()
    wrapped = provider.wrap(generate_dek())
    second = provider.rotate()
    assert second != first
    with pytest.raises(IntegrityError):
        provider.unwrap(WrappedKey(second, wrapped.blob))


@pytest.mark.parametrize("kek_id", ["../keys/CURRENT", "/etc/passwd", "local-../../x", "", "LOCAL-" + "0" * 24])
def test_kek_ids_not_of_the_generated_form_are_rejected(provider, kek_id):
    blob = provider.wrap(generate_dek()).blob
    with pytest.raises(KeyNotFound):
        provider.unwrap(WrappedKey(kek_id, blob))


def test_group_readable_kek_file_is_refused(provider):
    wrapped = provider.wrap(generate_dek())
    (provider.directory / f"{wrapped.kek_id}.kek").chmod(0o640)
    fresh = LocalFileKeyProvider(provider.directory)  # no cached key
    with pytest.raises(BlobStoreError, match="0600"):
        fresh.unwrap(wrapped)


def test_wrapping_refuses_a_key_of_the_wrong_length(provider):
    with pytest.raises(ValueError):
        provider.wrap(b"short")
