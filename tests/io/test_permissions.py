"""Outputs get the permissions a plain ``open()`` would give them (0o666 minus the umask).

Written through temp file + rename, they used to keep ``mkstemp``'s 0600 and a shared output
folder was unreadable to other users.
"""

from __future__ import annotations

import os
import stat
import sys

import pytest

from flameqa.io import shards as sh
from flameqa.io.atomic import atomic_write_bytes, create_temp
from tests.conftest import make_video

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


@pytest.fixture(params=[(0o022, 0o644), (0o077, 0o600)], ids=["umask022", "umask077"])
def umask(request):
    """Run the test under a given umask; yields the file mode expected for new files."""
    mask, expected = request.param
    old = os.umask(mask)
    try:
        yield expected
    finally:
        os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_shard_and_marker_follow_umask(tmp_path, umask):
    shard = sh.write_shard(tmp_path, "videos", 0, sh.empty_table("videos"))
    marker = sh.write_marker(tmp_path, "videos", 0, {"rows": 0})
    assert _mode(shard) == umask and _mode(marker) == umask
    assert not list((tmp_path / "videos").rglob(".*.tmp"))  # no temp file left behind


def test_atomic_write_follows_umask(tmp_path, umask):
    p = atomic_write_bytes(tmp_path / "sub" / "config.yaml", b"a: 1\n")
    assert p.read_bytes() == b"a: 1\n" and _mode(p) == umask


def test_extracted_audio_follows_umask(tmp_path, umask):
    from flameqa.io.media import extract_audio

    src = make_video(tmp_path / "v.mp4", seconds=0.5)
    wav = tmp_path / "media" / "v.wav"
    assert extract_audio(src, wav) > 0.4
    assert _mode(wav) == umask


def test_create_temp_is_exclusive_and_named_like_mkstemp(tmp_path):
    fd1, p1 = create_temp(tmp_path, prefix=".x.", suffix=".tmp")
    fd2, p2 = create_temp(tmp_path, prefix=".x.", suffix=".tmp")
    os.close(fd1)
    os.close(fd2)
    assert p1 != p2 and all(os.path.basename(p).startswith(".x.") and p.endswith(".tmp") for p in (p1, p2))
