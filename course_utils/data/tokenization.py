"""Word tokenization for Multi30k: spaCy's blank German and English tokenizers, and back.

``spacy.blank("de")`` and ``spacy.blank("en")`` are tokenizers only (rules and exceptions
for each language, no trained pipeline), so nothing is downloaded; they split text exactly
as the ``de_core_news_sm`` / ``en_core_web_sm`` models do. spaCy's tokenizer never drops a
character: a double space inside a caption becomes a whitespace token (Multi30k's German
training side has 91 of them). They are kept, as in the published Multi30k pipelines, so
that the vocabulary sizes match the literature (7,853 German and 5,893 English types at
``min_freq=2``, lowercased, with 4 specials).

:func:`detokenize` goes the other way for English model output (a list of tokens back to
a sentence), which the standard sacreBLEU score needs: it compares detokenized text with
the raw reference captions.

spaCy is imported lazily: it takes seconds to import, and a run that finds the tokenized
corpus in the cache (:mod:`course_utils.data.multi30k`) never needs it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata

__all__ = ["LANGUAGES", "detokenize", "spacy_version", "tokenize", "tokenizer"]

#: The languages of Multi30k task 1, as spaCy language codes.
LANGUAGES: tuple[str, ...] = ("de", "en")

# Tokens written without a space before them ("a man ." -> "a man."), and after them.
_NO_SPACE_BEFORE = frozenset({".", ",", ";", ":", "!", "?", ")", "]", "}", "%", "'s", "'re",
                              "'m", "'ll", "'ve", "'d", "n't", "'", "-", "/"})
_NO_SPACE_AFTER = frozenset({"(", "[", "{", "$", "-", "/", "#"})
_QUOTE = '"'


def spacy_version() -> str:
    """The installed spaCy version (part of the cache key: tokenizer rules change between versions)."""
    return metadata.version("spacy")


@functools.cache
def _blank(lang: str):  # -> spacy.language.Language (not imported at module level)
    """``spacy.blank(lang)``, built once per language and process."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}: Multi30k has {LANGUAGES}")
    import spacy  # slow to import: only when something is actually tokenized

    return spacy.blank(lang)


def tokenizer(lang: str) -> Callable[[str], list[str]]:
    """A function ``text -> list of token strings`` for ``lang`` (``"de"`` or ``"en"``).

    Uses ``spacy.blank(lang)``: a rule-based tokenizer, no model download.

    >>> tokenizer("en")("A man's t-shirt.")
    ['A', 'man', "'s", 't', '-', 'shirt', '.']
    """
    spacy_tokenizer = _blank(lang).tokenizer
    return lambda text: [token.text for token in spacy_tokenizer(text)]


def tokenize(lines: Iterable[str], lang: str) -> list[list[str]]:
    """Tokenize many lines at once (spaCy's ``tokenizer.pipe``, faster than a loop).

    >>> tokenize(["Zwei Hunde spielen im Schnee."], "de")
    [['Zwei', 'Hunde', 'spielen', 'im', 'Schnee', '.']]
    """
    spacy_tokenizer = _blank(lang).tokenizer
    return [[token.text for token in doc] for doc in spacy_tokenizer.pipe(lines, batch_size=1000)]


def detokenize(tokens: Sequence[str]) -> str:
    """Join English tokens into a sentence, undoing spaCy's splits: ``"a man 's t - shirt ."``
    -> ``"a man's t-shirt."``.

    Rules: no space before closing punctuation and clitics (``. , ; : ! ? ) 's n't``), none
    around hyphens and slashes, none after opening brackets; double quotes alternate between
    opening (glued to the next token) and closing (glued to the previous one). Whitespace
    tokens are dropped. On Multi30k's English test references, detokenizing their own tokens
    gives back the exact caption for about 99% of them (``tests/test_multi30k_data.py``).
    """
    out: list[str] = []
    glue_next = False  # the previous token forbids a space after it
    quotes_open = False
    for token in tokens:
        if not token.strip():
            continue
        if token == _QUOTE:
            if quotes_open:  # closing quote: glued to the previous token
                out.append(token)
                glue_next = False
            else:  # opening quote: glued to the next token
                out.append(token if not out else " " + token)
                glue_next = True
            quotes_open = not quotes_open
            continue
        if not out or glue_next or token in _NO_SPACE_BEFORE:
            out.append(token)
        else:
            out.append(" " + token)
        glue_next = token in _NO_SPACE_AFTER
    return "".join(out)
