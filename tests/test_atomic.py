import os
import stat

import pytest

from worldrl.atomic import atomic_write, copy_atomic, write_json_atomic


def test_written_file_has_umask_permissions_not_mkstemp_private(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = write_json_atomic(tmp_path / "sub" / "data.json", {"a": 1})
    assert path.read_text() == '{\n "a": 1\n}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    copied = copy_atomic(path, tmp_path / "copy.json")
    assert copied.read_bytes() == path.read_bytes()


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def crash(file):
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, crash)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.bin"]
