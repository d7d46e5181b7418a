"""Scoring a translator on Multi30k: BLEU two ways, and perplexity.

**BLEU** (Papineni et al., 2002) compares a system's output with reference translations by
counting the 1- to 4-word sequences they share, with a penalty for outputs shorter than the
references. It is computed with `sacrebleu <https://github.com/mjpost/sacrebleu>`_, on the
whole test set at once (corpus BLEU), in two ways that answer two different questions:

1. :func:`bleu_on_tokens`: **tokenized, lowercased BLEU**. The model's output tokens and the
   references' spaCy tokens, lowercased, joined by spaces, with sacreBLEU told not to
   tokenize again (``tokenize="none"``). This is how the Multi30k tutorials and papers that
   use torchtext's ``bleu_score`` report their numbers (e.g. 36.5 for a 3+3-layer, d=256
   Transformer), so it is the number to compare with them.
2. :func:`sacrebleu_on_text`: **standard sacreBLEU**. The output is detokenized into a
   sentence (:func:`course_utils.data.tokenization.detokenize`, first letter capitalised)
   and scored against the raw reference captions with sacreBLEU's own tokenizer (13a),
   case-sensitive. It does not depend on how we tokenized, so it can be compared across
   systems and papers; its *signature* (``nrefs:1|case:mixed|eff:no|tok:13a|...``) says
   exactly how it was computed. It is lower than (1): the model's output is lowercase and
   must be re-cased, and detokenization is imperfect.

**Perplexity** is ``exp`` of the mean cross-entropy per target token under teacher forcing
(no label smoothing): roughly, how many words the model hesitates between at each step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from course_utils.data.batching import MAX_LEN, SubwordTokenizer, TokenBatches, encode_split
from course_utils.data.multi30k import ParallelSplit
from course_utils.data.tokenization import detokenize
from course_utils.data.vocab import BOS_IDX, EOS_IDX, PAD_IDX, Vocab
from course_utils.reference.decoding import greedy_decode
from course_utils.reference.translation import batch_by_tokens, collate_batch, evaluate_loss
from course_utils.reference.translation import perplexity as perplexity_of_loss

__all__ = [
    "Decoder",
    "TranslationScores",
    "bleu_on_tokens",
    "decode_length",
    "evaluate_translation",
    "perplexity",
    "sacrebleu_on_text",
    "to_text",
    "translate_ids",
    "translate_sentences",
]

#: ``decoder(model, src (B, Ls), max_len, bos_idx, eos_idx, pad_idx) -> ids (B, L)``:
#: :func:`~course_utils.reference.decoding.greedy_decode`, beam search, or a student's own.
Decoder = Callable[..., Tensor]


def decode_length(src_len: int, cap: int = MAX_LEN) -> int:
    """The ``max_len`` used to translate a source of ``src_len`` tokens: room for an output
    half as long again plus 10 tokens, at most ``cap``. Multi30k captions translate to
    about as many tokens as they have, so this is rarely reached."""
    return min(cap, int(1.5 * src_len) + 10)


def translate_ids(model: nn.Module, sources: Sequence[Sequence[int]], *, decoder: Decoder = greedy_decode,
                  max_tokens: int = 2000, bos_idx: int = BOS_IDX, eos_idx: int = EOS_IDX,
                  pad_idx: int = PAD_IDX, device: torch.device | str | None = None,
                  progress: Callable[[int], Any] | None = None) -> list[list[int]]:
    """Translate many id sequences (``<bos> ... <eos>``), in batches of similar lengths.

    Args:
        decoder: the search (greedy by default).
        max_tokens: source positions per batch.
        progress: called with the number of sentences done after each batch.

    Returns:
        one id list per source, in the input order, ``<bos>``/``<eos>``/padding removed.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    results: list[list[int]] = [[] for _ in sources]
    for batch in batch_by_tokens([len(s) for s in sources], max_tokens):
        src, _ = collate_batch([(sources[i], [pad_idx]) for i in batch], pad_idx)
        src = src.to(device)
        with torch.no_grad():
            output = decoder(model, src, decode_length(src.size(1)), bos_idx, eos_idx, pad_idx)
        for i, row in zip(batch, output.tolist()):
            ids = []
            for token in row[1:]:
                if token == eos_idx:
                    break
                if token != pad_idx:
                    ids.append(token)
            results[i] = ids
        if progress is not None:
            progress(len(batch))
    return results


def translate_sentences(model: nn.Module, sentences: Sequence[str], src_vocab: Vocab | SubwordTokenizer,
                        tgt_vocab: Vocab | SubwordTokenizer, *, src_lang: str = "de",
                        decoder: Decoder = greedy_decode) -> list[str]:
    """German text in, English text out: encode (spaCy tokens for a word vocabulary, the raw text for a
    subword tokenizer), translate, and back to text."""
    from course_utils.data.tokenization import tokenize

    if isinstance(src_vocab, Vocab):
        sources = [src_vocab.encode(tokens) for tokens in tokenize(sentences, src_lang)]
    else:
        sources = [src_vocab.encode(text, add_bos=True, add_eos=True) for text in sentences]
    outputs = translate_ids(model, [ids[:MAX_LEN - 1] for ids in sources], decoder=decoder)
    return [to_text(ids, tgt_vocab) for ids in outputs]


def to_text(ids: Sequence[int], vocab: Vocab | SubwordTokenizer) -> str:
    """A translation's ids as a sentence: a word vocabulary's tokens are detokenized and capitalised
    (the words were lowercased); a subword tokenizer decodes its own text, case and spaces included."""
    if isinstance(vocab, Vocab):
        return _capitalize(detokenize(vocab.decode(ids)))
    return vocab.decode(ids).strip()


def bleu_on_tokens(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]]):
    """Corpus BLEU (1): lowercased tokens joined by spaces, ``tokenize="none"``.

    Args:
        hypotheses: the output tokens of each sentence.
        references: the reference tokens (spaCy's), one list per sentence.

    Returns:
        a ``sacrebleu.metrics.bleu.BLEUScore`` (``.score`` is BLEU in 0-100).
    """
    from sacrebleu.metrics import BLEU

    hyps = [" ".join(t.lower() for t in h) for h in hypotheses]
    refs = [" ".join(t.lower() for t in r) for r in references]
    # force=True: the input is tokenized on purpose; without it sacreBLEU warns on stderr.
    return BLEU(tokenize="none", force=True).corpus_score(hyps, [refs])


def sacrebleu_on_text(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[Any, str]:
    """Standard sacreBLEU (2) of detokenized hypotheses against raw references.

    Returns:
        ``(score, signature)``: the ``BLEUScore`` and its signature string.
    """
    from sacrebleu.metrics import BLEU

    metric = BLEU()  # defaults: 13a tokenizer, case-sensitive, exp smoothing
    score = metric.corpus_score(list(hypotheses), [[r.strip() for r in references]])
    return score, str(metric.get_signature())


def _capitalize(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def perplexity(model: nn.Module, batches: TokenBatches | Sequence[tuple[Tensor, Tensor]],
               pad_idx: int = PAD_IDX) -> tuple[float, float]:
    """``(mean cross-entropy per target token, perplexity)`` under teacher forcing."""
    loss = evaluate_loss(model, batches, pad_idx)
    return loss, perplexity_of_loss(loss)


@dataclass
class TranslationScores:
    """What :func:`evaluate_translation` measured on one split."""

    bleu: float
    """BLEU (1): lowercased spaCy tokens, ``tokenize="none"``."""
    sacrebleu: float
    """BLEU (2): standard sacreBLEU on detokenized text, case-sensitive."""
    signature: str
    """sacreBLEU's signature of (2)."""
    loss: float
    """Mean cross-entropy per target token (teacher forcing, no smoothing)."""
    perplexity: float
    seconds: float
    """Time spent decoding."""
    hypotheses: list[list[str]] = field(default_factory=list, repr=False)
    """The output tokens, one list per sentence."""
    detokenized: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The scores for a metrics JSON (without the translations)."""
        return {"bleu_tokenized": round(self.bleu, 2), "sacrebleu": round(self.sacrebleu, 2),
                "sacrebleu_signature": self.signature, "loss": round(self.loss, 4),
                "perplexity": round(self.perplexity, 3), "decode_seconds": round(self.seconds, 1)}


def evaluate_translation(model: nn.Module, split: ParallelSplit, src_vocab: Vocab | SubwordTokenizer,
                         tgt_vocab: Vocab | SubwordTokenizer, *,
                         decoder: Decoder = greedy_decode, src_lang: str = "de",
                         max_tokens: int = 2000, device: torch.device | str | None = None,
                         progress: Callable[[int], Any] | None = None) -> TranslationScores:
    """Translate a whole split and score it: BLEU both ways, loss and perplexity.

    Every line is translated (over-long sources are truncated, see
    :func:`~course_utils.data.batching.encode_split`), so the scores cover the full split. With word
    vocabularies the output tokens are scored by BLEU (1) and detokenized for sacreBLEU; with a subword
    tokenizer (chapter 12) the decoded text is scored by sacreBLEU and its spaCy tokens by BLEU (1).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    encoded = encode_split(split, src_vocab, tgt_vocab, src_lang=src_lang, long="truncate")
    loss, ppl = perplexity(model, TokenBatches(encoded.pairs, max_tokens, shuffle=False, device=device))
    start = time.perf_counter()
    outputs = translate_ids(model, [src for src, _ in encoded.pairs], decoder=decoder,
                            max_tokens=max_tokens, device=device, progress=progress)
    seconds = time.perf_counter() - start
    tgt_lang = "en" if src_lang == "de" else "de"
    detokenized = [to_text(ids, tgt_vocab) for ids in outputs]
    if isinstance(tgt_vocab, Vocab):
        hypotheses = [tgt_vocab.decode(ids) for ids in outputs]
    else:  # subwords: the text is the output; BLEU (1) reads it through the references' spaCy tokenizer
        from course_utils.data.tokenization import tokenize

        hypotheses = tokenize(detokenized, tgt_lang)
    references = split.en_tokens if src_lang == "de" else split.de_tokens
    raw_references = split.en if src_lang == "de" else split.de
    bleu = bleu_on_tokens(hypotheses, references)
    standard, signature = sacrebleu_on_text(detokenized, raw_references)
    return TranslationScores(bleu=bleu.score, sacrebleu=standard.score, signature=signature, loss=loss,
                             perplexity=ppl, seconds=seconds, hypotheses=hypotheses,
                             detokenized=detokenized)
