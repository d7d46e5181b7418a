"""Multi30k's data pipeline: verified offline loading, spaCy tokens and their cache, the
vocabulary (sizes, specials, unknown words, save/load), encoding with long sentences, and
length-bucketed batches under a token budget."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch

from course_utils.data import DATA_DIR, DataFileError
from course_utils.data import multi30k as multi30k_module
from course_utils.data.batching import MAX_LEN, TokenBatches, encode_split, pair_lengths
from course_utils.data.multi30k import MULTI30K_SPLITS, ParallelSplit, load_multi30k, multi30k_cache_key
from course_utils.data.tokenization import detokenize, tokenize, tokenizer
from course_utils.data.vocab import BOS_IDX, EOS_IDX, PAD_IDX, SPECIALS, UNK_IDX, Vocab


@pytest.fixture(scope="module")
def corpus():
    return load_multi30k()


@pytest.fixture(scope="module")
def vocabs(corpus):
    return (Vocab.build(corpus.train.de_tokens, min_freq=2, lowercase=True),
            Vocab.build(corpus.train.en_tokens, min_freq=2, lowercase=True))


# --- loading ------------------------------------------------------------------------------


def test_splits_have_the_published_sizes_and_aligned_sides(corpus) -> None:
    assert (len(corpus.train), len(corpus.val), len(corpus.test)) == (29_000, 1_014, 1_000)
    for split in (corpus.train, corpus.val, corpus.test):
        assert len(split.de) == len(split.en) == len(split.de_tokens) == len(split.en_tokens)
    assert corpus.train.de_tokens[0][:3] == ["Zwei", "junge", "weiße"]
    assert corpus.test.en[0] == "A man in an orange hat starring at something."


def _copy_data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(DATA_DIR / "multi30k", folder / "multi30k")
    return folder


def test_a_missing_file_gives_one_clear_error(tmp_path: Path) -> None:
    folder = _copy_data(tmp_path)
    (folder / "multi30k" / "val.en.gz").unlink()
    with pytest.raises(DataFileError) as caught:
        load_multi30k(folder, use_cache=False)
    message = str(caught.value)
    assert "Multi30k cannot be loaded" in message
    assert "val.en.gz is missing" in message
    assert "copy it from there" in message  # the fix, worded for a redirected folder


def test_several_bad_files_are_reported_together(tmp_path: Path) -> None:
    folder = _copy_data(tmp_path)
    (folder / "multi30k" / "train.de.gz").unlink()
    (folder / "multi30k" / "test_2016_flickr.en.gz").write_bytes(gzip.compress(b"not the captions\n"))
    with pytest.raises(DataFileError) as caught:
        load_multi30k(folder, use_cache=False)
    message = str(caught.value)
    assert "2 of its 6 files are missing or corrupt" in message
    assert "train.de.gz is missing" in message
    assert "test_2016_flickr.en.gz is corrupt" in message and "sha256" in message


def test_the_course_folder_error_names_git_as_the_fix(monkeypatch, tmp_path: Path) -> None:
    from course_utils.data import files

    folder = _copy_data(tmp_path)
    (folder / "multi30k" / "train.en.gz").unlink()
    monkeypatch.setattr(files, "DATA_DIR", folder)  # as if this were the course's own data/
    with pytest.raises(DataFileError, match=r"train\.en\.gz is missing: .*`git checkout -- data/`"):
        load_multi30k(use_cache=False)


# --- tokenization and its cache ---------------------------------------------------------


def test_blank_spacy_tokenizers_split_punctuation_and_clitics() -> None:
    assert tokenizer("en")("A man's t-shirt.") == ["A", "man", "'s", "t", "-", "shirt", "."]
    assert tokenize(["Zwei Hunde spielen im Schnee."], "de") == [["Zwei", "Hunde", "spielen", "im", "Schnee", "."]]
    with pytest.raises(ValueError, match="unknown language"):
        tokenizer("fr")


def test_the_cache_is_written_then_used_with_the_same_tokens(tmp_path: Path, corpus) -> None:
    cold = load_multi30k(cache_dir=tmp_path)
    assert not cold.from_cache
    assert cold.cache_file is not None and cold.cache_file.is_file()
    assert cold.cache_file.parent == tmp_path / "multi30k"
    warm = load_multi30k(cache_dir=tmp_path)
    assert warm.from_cache
    assert warm.train.de_tokens == cold.train.de_tokens == corpus.train.de_tokens
    assert warm.test.en_tokens == cold.test.en_tokens


def test_a_damaged_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    first = load_multi30k(cache_dir=tmp_path)
    first.cache_file.write_text('{"truncated": ', encoding="utf-8")
    again = load_multi30k(cache_dir=tmp_path)
    assert not again.from_cache
    assert json.loads(again.cache_file.read_text(encoding="utf-8")).keys() == {
        f"multi30k/{stem}.{lang}.gz" for stem in MULTI30K_SPLITS.values() for lang in ("de", "en")}


def test_the_cache_key_depends_on_the_tokenizer_version(monkeypatch) -> None:
    key = multi30k_cache_key()
    monkeypatch.setattr(multi30k_module, "spacy_version", lambda: "0.0.1")
    assert multi30k_cache_key() != key


def test_the_cache_is_git_ignored() -> None:
    ignored = (DATA_DIR.parent / ".gitignore").read_text(encoding="utf-8").split()
    assert ".cache/" in ignored and "checkpoints/" in ignored
    assert multi30k_module.CACHE_DIR == DATA_DIR.parent / ".cache"


def test_detokenize_restores_almost_every_reference(corpus) -> None:
    exact = sum(detokenize(tokens) == line.strip() for tokens, line in zip(corpus.test.en_tokens, corpus.test.en))
    assert exact >= 0.99 * len(corpus.test)
    assert detokenize(["a", "man", "'s", "t", "-", "shirt", ",", "(", "red", ")", "."]) == "a man's t-shirt, (red)."
    assert detokenize(['he', 'says', '"', 'hi', '"', '.']) == 'he says "hi".'


# --- vocabulary ---------------------------------------------------------------------------


def test_vocabulary_sizes_match_the_literature(vocabs) -> None:
    de, en = vocabs
    assert (len(de), len(en)) == (7_853, 5_893)  # min_freq=2, lowercased, 4 specials included


def test_specials_come_first_with_fixed_ids(vocabs) -> None:
    for vocab in vocabs:
        assert vocab.itos[:4] == list(SPECIALS) == ["<pad>", "<unk>", "<bos>", "<eos>"]
        assert (vocab.pad_idx, vocab.unk_idx, vocab.bos_idx, vocab.eos_idx) == (0, 1, 2, 3)
        assert (PAD_IDX, UNK_IDX, BOS_IDX, EOS_IDX) == (0, 1, 2, 3)


def test_unknown_words_map_to_unk_and_case_is_folded(vocabs) -> None:
    de, en = vocabs
    assert en["Dog"] == en["dog"] != UNK_IDX
    assert de["Quasselstrippenball"] == UNK_IDX
    ids = en.encode(["A", "dog", "zzyzx", "."])
    assert ids[0] == BOS_IDX and ids[-1] == EOS_IDX and ids[3] == UNK_IDX
    assert en.decode(ids) == ["a", "dog", "<unk>", "."]
    assert en.decode([BOS_IDX, en["dog"], EOS_IDX, en["cat"]]) == ["dog"]  # stops at <eos>


def test_min_freq_and_lowercase_options(corpus) -> None:
    cased = Vocab.build(corpus.train.en_tokens, min_freq=2, lowercase=False)
    assert len(cased) > 5_893 and cased["Dog"] != cased["dog"]
    rare = Vocab.build(corpus.train.en_tokens, min_freq=1)
    often = Vocab.build(corpus.train.en_tokens, min_freq=5)
    assert len(often) < 5_893 < len(rare)
    tiny = Vocab.build([["b", "a", "b", "c", "a", "b"]], min_freq=1)
    assert tiny.itos[4:] == ["b", "a", "c"]  # by frequency, ties alphabetical


def test_vocabulary_save_and_load(tmp_path: Path, vocabs) -> None:
    de, _ = vocabs
    path = tmp_path / "de.json"
    de.save(path)
    loaded = Vocab.load(path)
    assert loaded == de and loaded.lowercase and len(loaded) == 7_853
    assert loaded["Hund"] == de["hund"]
    with pytest.raises(ValueError, match="not a course_utils vocabulary"):
        Vocab.from_dict({"format": "other", "lowercase": True, "itos": ["a"]})
    with pytest.raises(ValueError, match="special"):
        Vocab(["<unk>"])


# --- encoding and batching ------------------------------------------------------------------


def test_encode_split_adds_bos_eos_and_counts_unknowns(corpus, vocabs) -> None:
    encoded = encode_split(corpus.test, *vocabs, long="truncate")
    assert len(encoded) == 1_000 and encoded.dropped == encoded.truncated == 0
    for src, tgt in encoded.pairs[:50]:
        assert src[0] == tgt[0] == BOS_IDX and src[-1] == tgt[-1] == EOS_IDX
    assert 0.01 < encoded.src_unk_rate < 0.06 and 0.0 < encoded.tgt_unk_rate < 0.03
    assert max(pair_lengths(encode_split(corpus.train, *vocabs).pairs)) <= MAX_LEN


def test_over_long_sentences_are_dropped_or_truncated_and_counted(corpus, vocabs) -> None:
    split = corpus.train.subset(500)
    longest = max(max(len(d), len(e)) for d, e in zip(split.de_tokens, split.en_tokens)) + 2
    over = sum(max(len(d), len(e)) + 2 > 12 for d, e in zip(split.de_tokens, split.en_tokens))
    dropped = encode_split(split, *vocabs, max_len=12, long="drop")
    assert dropped.dropped == over > 0 and len(dropped) == 500 - over
    assert dropped.lines == [i for i in range(500) if max(len(split.de_tokens[i]), len(split.en_tokens[i])) + 2 <= 12]
    truncated = encode_split(split, *vocabs, max_len=12, long="truncate")
    assert truncated.truncated == over and len(truncated) == 500
    assert all(len(s) <= 12 and len(t) <= 12 and s[-1] == t[-1] == EOS_IDX for s, t in truncated.pairs)
    assert encode_split(split, *vocabs, max_len=longest).dropped == 0
    assert "dropped" in dropped.summary()


def test_token_batches_cover_every_pair_once_within_the_budget(corpus, vocabs) -> None:
    pairs = encode_split(corpus.train.subset(3_000), *vocabs).pairs
    batches = TokenBatches(pairs, max_tokens=600, shuffle=True, seed=3)
    plan = batches.plan()
    assert sorted(i for batch in plan for i in batch) == list(range(len(pairs)))
    lengths = pair_lengths(pairs)
    assert all(len(b) * max(lengths[i] for i in b) <= 600 for b in plan)
    assert batches.padding_fraction() < 0.05
    seen = 0
    for src, tgt in batches:
        assert src.dtype == tgt.dtype == torch.long and src.size(0) == tgt.size(0)
        assert src.size(0) * max(src.size(1), tgt.size(1)) <= 600
        seen += src.size(0)
    assert seen == len(pairs) and batches.epoch == 1


def test_token_batches_reshuffle_each_epoch_reproducibly(corpus, vocabs) -> None:
    pairs = encode_split(corpus.train.subset(2_000), *vocabs).pairs
    a, b = TokenBatches(pairs, 500, seed=1), TokenBatches(pairs, 500, seed=1)
    first = a.plan()
    list(a)
    assert a.plan() != first  # a new grouping and order for the second epoch
    assert b.plan() == first  # same seed, same first epoch
    fixed = TokenBatches(pairs, 500, shuffle=False)
    assert fixed.plan() == fixed.plan(5)


def test_token_batches_use_the_given_collate_and_batcher(corpus, vocabs) -> None:
    pairs = encode_split(corpus.train.subset(50), *vocabs).pairs
    calls = []

    def batcher(lengths, max_tokens):
        calls.append(max_tokens)
        return [list(range(len(lengths)))]

    def collate(batch, pad_idx):
        calls.append(len(batch))
        return torch.zeros(len(batch), 2, dtype=torch.long), torch.zeros(len(batch), 3, dtype=torch.long)

    [(src, tgt)] = list(TokenBatches(pairs, 10_000, collate=collate, batcher=batcher))
    assert calls == [10_000, 50] and src.shape == (50, 2)


def test_parallel_split_subset() -> None:
    split = ParallelSplit("x", ["a", "b"], ["c", "d"], [["a"], ["b"]], [["c"], ["d"]])
    assert len(split.subset(1)) == 1 and split.subset(1).en_tokens == [["c"]]
