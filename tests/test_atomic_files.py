"""Files written complete or not at all (funknn_fast.atomic_files)."""

import pytest

from funknn_fast.atomic_files import write_atomically, write_text_atomically


def test_text_is_written_and_replaces_the_old_content(tmp_path):
    target = tmp_path / "results.md"
    write_text_atomically(target, "first\n")
    write_text_atomically(str(target), "second\n")
    assert target.read_text() == "second\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "image.png"
    target.write_text("old")

    def half_write(tmp):
        tmp.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_write)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["image.png"]
    with pytest.raises(OSError):
        write_atomically(tmp_path / "absent.png", half_write)
    assert not (tmp_path / "absent.png").exists()


def test_the_temporary_keeps_the_given_suffix(tmp_path):
    seen = []
    write_atomically(tmp_path / "a.npy", lambda tmp: (seen.append(tmp), tmp.write_bytes(b"x")),
                     ".npy")
    assert seen[0].suffix == ".npy" and seen[0].parent == tmp_path
    assert (tmp_path / "a.npy").read_bytes() == b"x"
