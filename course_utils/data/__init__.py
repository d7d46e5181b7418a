"""The course's data: the files shipped in ``data/``, read offline and verified.

For now this holds the checked file access (:mod:`course_utils.data.files`): every
loader goes through :func:`read_text` / :func:`read_lines`, which compare the sha256 of
the decompressed text with :data:`DATA_FILES` and raise :class:`DataFileError`, naming
the file and the fix, when a file is missing or damaged. Later chapters add Multi30k
tokenization (spaCy's blank ``de``/``en`` tokenizers), vocabularies and batching here,
plus the toy tasks used before the real data.
"""

from course_utils.data.files import (
    DATA_DIR,
    DATA_FILES,
    DataFileError,
    FileInfo,
    read_lines,
    read_text,
    resolve_data_dir,
    verify_all,
)

__all__ = [
    "DATA_DIR",
    "DATA_FILES",
    "DataFileError",
    "FileInfo",
    "read_lines",
    "read_text",
    "resolve_data_dir",
    "verify_all",
]
