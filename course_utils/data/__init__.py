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
from course_utils.data.multi30k import Multi30k, ParallelSplit, load_multi30k, verify_multi30k
from course_utils.data.vocab import BOS_IDX, EOS_IDX, PAD_IDX, SPECIALS, UNK_IDX, Vocab
from course_utils.data.batching import MAX_LEN, EncodedSplit, TokenBatches, encode_split
from course_utils.data.tokenization import detokenize, tokenize
from course_utils.data.toy import (
    TOY_BOS_IDX,
    TOY_EOS_IDX,
    TOY_PAD_IDX,
    TOY_TASKS,
    TOY_TOKENS,
    TOY_VOCAB_SIZE,
    ToyTask,
    make_toy_batch,
    toy_answer,
    toy_batches,
    toy_to_text,
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
