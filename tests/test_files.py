"""Atomic writes: files follow the umask like ``open()``'s, whatever writes them."""

import os
import stat
from pathlib import Path

import pytest

from edgecnn.files import atomic_write_bytes, atomic_write_text


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_text(tmp_path / "report.html", "<html></html>")
    atomic_write_bytes(tmp_path / "sub" / "last.pt", b"\0" * 10)
    assert mode(tmp_path / "report.html") == expected
    assert mode(tmp_path / "sub" / "last.pt") == expected
    # Rewriting keeps following the umask, and leaves no temporary behind.
    atomic_write_text(tmp_path / "report.html", "again")
    assert mode(tmp_path / "report.html") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "sub"]


def test_checkpoints_and_artifacts_follow_the_umask(tmp_path, umask):
    """Checkpoints go through the atomic writer; artifacts (.pte) through export's temp_names."""
    from edgecnn.export.artifact import temp_names
    from edgecnn.train.checkpoint import save_checkpoint

    umask(0o027)
    save_checkpoint(tmp_path / "best.pt", {"model": {}})
    with temp_names([tmp_path / "m.pte"]) as (tmp,):
        tmp.write_bytes(b"pte")
    assert mode(tmp_path / "best.pt") == 0o640
    assert mode(tmp_path / "m.pte") == 0o640
