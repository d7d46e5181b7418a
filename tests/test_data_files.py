"""The shipped datasets verify, and a missing or damaged file fails with a usable message."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
from pathlib import Path

import pytest

from course_utils.data import (
    DATA_DIR,
    DATA_FILES,
    DataFileError,
    read_lines,
    read_text,
    resolve_data_dir,
    verify_all,
)

TRAIN_DE = "multi30k/train.de.gz"
SMALL = "multi30k/val.en.gz"  # small, so tests that copy or rewrite a file stay fast


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own COURSE_DATA_DIR must not change what these tests read.
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def line_counts() -> dict[str, int]:
    """Verify every shipped file once for the whole module (it decompresses ~5 MB)."""
    # Explicit DATA_DIR: a module-scoped fixture runs before the env-clearing autouse one.
    return verify_all(DATA_DIR)


def _copy(relpath: str, dest: Path) -> Path:
    """Copy one shipped file into ``dest`` under the same relative path."""
    target = dest / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA_DIR / relpath, target)
    return target


def test_every_shipped_file_verifies_with_expected_line_count(line_counts: dict[str, int]) -> None:
    assert set(line_counts) == set(DATA_FILES)
    for relpath, info in DATA_FILES.items():
        assert line_counts[relpath] == info.lines, relpath


@pytest.mark.parametrize("split", ["train", "val", "test_2016_flickr"])
def test_multi30k_sides_are_aligned(split: str, line_counts: dict[str, int]) -> None:
    # Line i of .de translates line i of .en, so both sides must have the same length.
    de, en = f"multi30k/{split}.de.gz", f"multi30k/{split}.en.gz"
    assert line_counts[de] == line_counts[en] == DATA_FILES[de].lines


def test_read_lines_strips_newlines_and_keeps_blank_lines() -> None:
    lines = read_lines("tinyshakespeare/input.txt.gz")
    assert len(lines) == 40_000
    assert not any("\n" in line for line in lines)
    assert "" in lines  # blank lines between speeches are real lines
    assert len(set(read_text("tinyshakespeare/input.txt.gz"))) == 65


def test_readme_lists_the_same_checksums() -> None:
    # DATA_FILES is the single source of truth; the README must not drift from it.
    readme = (DATA_DIR / "README.md").read_text(encoding="utf-8")
    for relpath, info in DATA_FILES.items():
        name = relpath.rsplit("/", 1)[-1]
        row = re.search(rf"^\|\s*`?{re.escape(name)}`?\s*\|.*$", readme, re.MULTILINE)
        assert row, f"data/README.md has no table row for {name}"
        assert info.sha256 in row.group(0), f"data/README.md: wrong sha256 for {name}"
        assert f"{info.lines:,}" in row.group(0), f"data/README.md: wrong line count for {name}"


def test_changed_text_fails_sha256_with_expected_and_actual(tmp_path: Path) -> None:
    # Valid gzip, one byte of the text changed: only the checksum can catch this.
    raw = bytearray(gzip.decompress((DATA_DIR / SMALL).read_bytes()))
    raw[10] ^= 0x01
    target = tmp_path / SMALL
    target.parent.mkdir(parents=True)
    target.write_bytes(gzip.compress(bytes(raw)))

    with pytest.raises(DataFileError) as err:
        read_lines(SMALL, data_dir=tmp_path)
    message = str(err.value)
    assert str(target) in message
    assert "sha256" in message
    assert DATA_FILES[SMALL].sha256 in message  # expected ...
    assert hashlib.sha256(raw).hexdigest() in message  # ... and actual
    assert "git checkout -- data/" in message


def test_changed_gzip_byte_fails_naming_file_and_sha256(tmp_path: Path) -> None:
    # One byte changed inside the compressed stream: decompression itself fails.
    target = _copy(SMALL, tmp_path)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))

    with pytest.raises(DataFileError) as err:
        read_text(SMALL, data_dir=tmp_path)
    message = str(err.value)
    assert str(target) in message
    assert "sha256" in message


def test_missing_file_names_file_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DataFileError) as err:
        read_lines(TRAIN_DE, data_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / TRAIN_DE) in message
    assert "is missing" in message
    assert "git checkout -- data/" in message


def test_missing_message_in_repo_uses_repo_relative_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a deleted file in the real data/ folder without touching it.
    real_is_file = Path.is_file
    monkeypatch.setattr(
        Path, "is_file", lambda self: False if self.name == "train.de.gz" else real_is_file(self)
    )
    with pytest.raises(DataFileError) as err:
        read_text(TRAIN_DE)
    assert str(err.value) == (
        "data/multi30k/train.de.gz is missing: the course ships it in data/; "
        "restore it with `git checkout -- data/` (or re-clone)"
    )


def test_course_data_dir_env_overrides_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy(SMALL, tmp_path)
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert len(read_lines(SMALL)) == DATA_FILES[SMALL].lines
    # Only SMALL was copied, so anything else now fails in the redirected folder.
    with pytest.raises(DataFileError, match=re.escape(str(tmp_path / TRAIN_DE))):
        read_text(TRAIN_DE)
    # An explicit argument still wins over the environment variable.
    assert resolve_data_dir(DATA_DIR) == DATA_DIR


def test_unknown_name_lists_the_shipped_files() -> None:
    with pytest.raises(ValueError, match="multi30k/train.de.gz"):
        read_text("multi30k/train.fr.gz")
