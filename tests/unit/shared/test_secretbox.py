"""Secrets at rest: AES-GCM records under a key file, bound to their name."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from drover.shared.secretbox import SecretBox, SecretKeyError, SecretRecord, load_or_create_key, read_key


def test_key_file_is_created_private_once(tmp_path: Path) -> None:
    path = tmp_path / "k" / "c.secret.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key == read_key(path)


def test_bad_key_files(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match="no such key file"):
        read_key(tmp_path / "missing")
    (tmp_path / "bad").write_text("not base64!")
    with pytest.raises(SecretKeyError, match="not a drover secret key"):
        read_key(tmp_path / "bad")


def test_seal_open_round_trip_and_no_plaintext_on_the_wire() -> None:
    box = SecretBox(b"k" * 32)
    data = b"p\x00ss\nword"
    rec = box.seal("db", data, version=1, created=1.0, now=2.0)
    wire = rec.to_wire()
    assert data not in wire and b"p\x00ss" not in wire
    back = SecretRecord.from_wire(wire)
    assert box.open(back) == data and back.size == len(data)


def test_wrong_key_or_moved_name_fails() -> None:
    rec = SecretBox(b"k" * 32).seal("db", b"x", version=1, created=0, now=0)
    with pytest.raises(SecretKeyError):
        SecretBox(b"j" * 32).open(rec)
    with pytest.raises(SecretKeyError):
        SecretBox(b"k" * 32).open(rec.model_copy(update={"name": "other"}))
