"""Known-wrong and correct answers for chapter 07_masking's checks.

Each mutant is a realistic student mistake; its ``expect`` pins the diagnosis the check gives
(a regular expression searched in the AssertionError's message). The correct answers are
written differently from the reference and must pass every visible and hidden call.
The Transformer answers build on the reference Encoder and Decoder (as the chapter allows),
except one that wires PyTorch's own layers, standing for a student's own encoder and decoder.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import course_utils.reference
from course_utils import reference
from course_utils.reference import Decoder, Encoder, PositionalEncoding
from tests.support import Bug, Catalogue, Mutant

# --------------------------------------------------------------------------------------
# create_padding_mask(seq, pad_idx) -> (B, 1, 1, L)
# --------------------------------------------------------------------------------------


def padding_stub(seq: Tensor, pad_idx: int) -> Tensor:
    # YOUR CODE HERE
    raise NotImplementedError()


def padding_inverted(seq: Tensor, pad_idx: int) -> Tensor:
    return (seq == pad_idx).unsqueeze(1).unsqueeze(2)


def padding_on_query_axis(seq: Tensor, pad_idx: int) -> Tensor:
    return (seq != pad_idx).unsqueeze(1).unsqueeze(3)  # (B, 1, L, 1)


def padding_float(seq: Tensor, pad_idx: int) -> Tensor:
    return (seq != pad_idx).float().unsqueeze(1).unsqueeze(2)


def padding_int(seq: Tensor, pad_idx: int) -> Tensor:
    return (seq != pad_idx).long()[:, None, None, :]


def padding_no_new_axes(seq: Tensor, pad_idx: int) -> Tensor:
    return seq != pad_idx


def padding_axes_in_front(seq: Tensor, pad_idx: int) -> Tensor:
    return (seq != pad_idx).unsqueeze(0).unsqueeze(0)


def padding_hard_coded_zero(seq: Tensor, pad_idx: int) -> Tensor:
    return (seq != 0).unsqueeze(1).unsqueeze(2)


def padding_wrapping_the_reference(seq: Tensor, pad_idx: int) -> Tensor:
    return course_utils.reference.create_padding_mask(seq, pad_idx)


def padding_ne_view(seq: Tensor, pad_idx: int) -> Tensor:
    batch, length = seq.shape
    return seq.ne(pad_idx).view(batch, 1, 1, length)


def padding_indexing(seq: Tensor, pad_idx: int) -> Tensor:
    return (seq != pad_idx)[:, None, None, :]


def padding_logical_not(seq: Tensor, pad_idx: int) -> Tensor:
    return torch.logical_not(seq.eq(pad_idx)).reshape(seq.size(0), 1, 1, -1)


# --------------------------------------------------------------------------------------
# create_causal_mask(size, device=None) -> (1, 1, L, L)
# --------------------------------------------------------------------------------------


def causal_stub(size: int, device=None) -> Tensor:
    # YOUR CODE HERE
    raise NotImplementedError()


def causal_without_diagonal(size: int, device=None) -> Tensor:
    return torch.ones(size, size, dtype=torch.bool, device=device).tril(-1)[None, None]


def causal_shifted_by_one(size: int, device=None) -> Tensor:
    return torch.ones(size, size, dtype=torch.bool, device=device).tril(1)[None, None]


def causal_upper_triangular(size: int, device=None) -> Tensor:
    return torch.ones(size, size, dtype=torch.bool, device=device).triu()[None, None]


def causal_pytorch_convention(size: int, device=None) -> Tensor:
    # nn.Transformer's convention: True = blocked.
    return torch.ones(size, size, dtype=torch.bool, device=device).triu(1)[None, None]


def causal_float(size: int, device=None) -> Tensor:
    return torch.tril(torch.ones(size, size, device=device)).unsqueeze(0).unsqueeze(0)


def causal_two_dims(size: int, device=None) -> Tensor:
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()


def causal_no_device_parameter(size: int) -> Tensor:
    return torch.ones(size, size, dtype=torch.bool).tril()[None, None]


def causal_wrapping_the_reference(size: int, device=None) -> Tensor:
    return course_utils.reference.create_causal_mask(size, device)


def causal_arange(size: int, device=None) -> Tensor:
    i = torch.arange(size, device=device)
    return (i[:, None] >= i[None, :]).view(1, 1, size, size)


def causal_not_triu(size: int, device=None) -> Tensor:
    return ~torch.ones(1, 1, size, size, device=device).triu(diagonal=1).bool()


def causal_from_builtin(size: int, device=None) -> Tensor:
    # PyTorch's additive mask (0 allowed, -inf blocked) turned into ours.
    additive = nn.Transformer.generate_square_subsequent_mask(size, device=torch.device(device or "cpu"))
    return (additive == 0)[None, None]


# --------------------------------------------------------------------------------------
# create_masks(src, tgt, pad_idx) -> (src_mask (B, 1, 1, Ls), tgt_mask (B, 1, Lt, Lt))
# --------------------------------------------------------------------------------------


def _pad(seq: Tensor, pad_idx: int) -> Tensor:
    return (seq != pad_idx)[:, None, None, :]


def _causal(size: int, device) -> Tensor:
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()[None, None]


def masks_stub(src: Tensor, tgt: Tensor, pad_idx: int):
    # YOUR CODE HERE
    raise NotImplementedError()


def masks_target_causal_only(src, tgt, pad_idx):
    return _pad(src, pad_idx), _causal(tgt.size(1), tgt.device)


def masks_target_causal_only_expanded(src, tgt, pad_idx):
    return _pad(src, pad_idx), _causal(tgt.size(1), tgt.device).expand(tgt.size(0), 1, -1, -1)


def masks_target_padding_only(src, tgt, pad_idx):
    return _pad(src, pad_idx), _pad(tgt, pad_idx)


def masks_or_instead_of_and(src, tgt, pad_idx):
    return _pad(src, pad_idx), _pad(tgt, pad_idx) | _causal(tgt.size(1), tgt.device)


def masks_target_padding_on_query_axis(src, tgt, pad_idx):
    return _pad(src, pad_idx), _pad(tgt, pad_idx).transpose(-1, -2) & _causal(tgt.size(1), tgt.device)


def masks_swapped(src, tgt, pad_idx):
    return _pad(tgt, pad_idx) & _causal(tgt.size(1), tgt.device), _pad(src, pad_idx)


def masks_source_from_target(src, tgt, pad_idx):
    return _pad(tgt, pad_idx), _pad(tgt, pad_idx) & _causal(tgt.size(1), tgt.device)


def masks_float(src, tgt, pad_idx):
    causal = torch.tril(torch.ones(tgt.size(1), tgt.size(1), device=tgt.device))
    return _pad(src, pad_idx), _pad(tgt, pad_idx).float() * causal


def masks_causal_without_diagonal(src, tgt, pad_idx):
    return _pad(src, pad_idx), _pad(tgt, pad_idx) & causal_without_diagonal(tgt.size(1), tgt.device)


def masks_wrapping_the_reference(src, tgt, pad_idx):
    return course_utils.reference.create_masks(src, tgt, pad_idx)


def masks_with_logical_and(src, tgt, pad_idx):
    lt = tgt.size(1)
    tgt_mask = torch.logical_and(tgt.ne(pad_idx).view(-1, 1, 1, lt), causal_arange(lt, tgt.device))
    return src.ne(pad_idx).view(src.size(0), 1, 1, -1), tgt_mask


def masks_from_reference_pieces(src, tgt, pad_idx):
    # The two helpers of this chapter may come from the answer key; create_masks may not.
    tgt_mask = reference.create_padding_mask(tgt, pad_idx) & reference.create_causal_mask(tgt.size(1), tgt.device)
    return reference.create_padding_mask(src, pad_idx), tgt_mask


# --------------------------------------------------------------------------------------
# Transformer(src_vocab_size, tgt_vocab_size, d_model=512, ..., pad_idx=0)
# --------------------------------------------------------------------------------------


def _masks(src: Tensor, tgt: Tensor, pad_idx: int) -> tuple[Tensor, Tensor]:
    return reference.create_masks(src, tgt, pad_idx)


class _Base(nn.Module):
    """A right Transformer on the reference Encoder and Decoder; mutants override a piece."""

    def __init__(self, src_vocab_size, tgt_vocab_size, d_model=512, num_layers=6, num_heads=8,
                 d_ff=2048, dropout=0.1, max_seq_length=5000, pad_idx=0):
        super().__init__()
        self.pad_idx = pad_idx
        self.encoder = Encoder(src_vocab_size, d_model, num_layers, num_heads, d_ff, dropout, max_seq_length)
        self.decoder = Decoder(tgt_vocab_size, d_model, num_layers, num_heads, d_ff, dropout, max_seq_length)
        self.generator = nn.Linear(d_model, tgt_vocab_size)

    def encode(self, src, src_mask):
        return self.encoder(src, src_mask)

    def decode(self, tgt, memory, src_mask, tgt_mask):
        return self.decoder(tgt, memory, src_mask, tgt_mask)

    def forward(self, src, tgt):
        src_mask, tgt_mask = _masks(src, tgt, self.pad_idx)
        return self.generator(self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask))


class TransformerStub(nn.Module):
    def __init__(self, src_vocab_size, tgt_vocab_size, d_model=512, num_layers=6, num_heads=8,
                 d_ff=2048, dropout=0.1, max_seq_length=5000, pad_idx=0):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class TransformerForwardStub(_Base):
    def forward(self, src, tgt):
        # YOUR CODE HERE
        raise NotImplementedError()


class TransformerSoftmaxInGenerator(_Base):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generator = nn.Sequential(self.generator, nn.Softmax(dim=-1))


class TransformerLogSoftmaxInGenerator(_Base):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generator = nn.Sequential(self.generator, nn.LogSoftmax(dim=-1))


class TransformerSoftmaxInForward(_Base):
    def forward(self, src, tgt):
        return torch.softmax(super().forward(src, tgt), dim=-1)


class TransformerLogSoftmaxInForward(_Base):
    def forward(self, src, tgt):
        return F.log_softmax(super().forward(src, tgt), dim=-1)


class TransformerMasksSwapped(_Base):
    def forward(self, src, tgt):
        src_mask, tgt_mask = _masks(src, tgt, self.pad_idx)
        memory = self.encode(src, src_mask)
        return self.generator(self.decode(tgt, memory, tgt_mask, src_mask))


class TransformerNoMasks(_Base):
    def forward(self, src, tgt):
        return self.generator(self.decode(tgt, self.encode(src, None), None, None))


class TransformerTargetMaskCausalOnly(_Base):
    def forward(self, src, tgt):
        src_mask = reference.create_padding_mask(src, self.pad_idx)
        tgt_mask = reference.create_causal_mask(tgt.size(1), tgt.device)
        return self.generator(self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask))


class TransformerPadZero(_Base):
    def forward(self, src, tgt):
        src_mask, tgt_mask = _masks(src, tgt, 0)
        return self.generator(self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask))


class TransformerNoCrossMask(_Base):
    def forward(self, src, tgt):
        src_mask, tgt_mask = _masks(src, tgt, self.pad_idx)
        return self.generator(self.decode(tgt, self.encode(src, src_mask), None, tgt_mask))


class TransformerNamedOutputLayer(_Base):
    def __init__(self, src_vocab_size, tgt_vocab_size, d_model=512, num_layers=6, num_heads=8,
                 d_ff=2048, dropout=0.1, max_seq_length=5000, pad_idx=0):
        super().__init__(src_vocab_size, tgt_vocab_size, d_model, num_layers, num_heads, d_ff,
                         dropout, max_seq_length, pad_idx)
        self.output_layer = self.generator
        del self.generator

    def forward(self, src, tgt):
        src_mask, tgt_mask = _masks(src, tgt, self.pad_idx)
        return self.output_layer(self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask))


class TransformerVocabSwapped(_Base):
    def __init__(self, src_vocab_size, tgt_vocab_size, d_model=512, num_layers=6, num_heads=8,
                 d_ff=2048, dropout=0.1, max_seq_length=5000, pad_idx=0):
        super().__init__(tgt_vocab_size, src_vocab_size, d_model, num_layers, num_heads, d_ff,
                         dropout, max_seq_length, pad_idx)


class TransformerGeneratorInDecode(_Base):
    def decode(self, tgt, memory, src_mask, tgt_mask):
        return self.generator(self.decoder(tgt, memory, src_mask, tgt_mask))

    def forward(self, src, tgt):
        src_mask, tgt_mask = _masks(src, tgt, self.pad_idx)
        return self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask)


class TransformerEncodeIgnoresMask(_Base):
    def encode(self, src, src_mask):
        return self.encoder(src)


class TransformerDetached(_Base):
    def forward(self, src, tgt):
        return super().forward(src, tgt).detach()


class TransformerWithoutPadIdx(_Base):
    def __init__(self, src_vocab_size, tgt_vocab_size, d_model=512, num_layers=6, num_heads=8,
                 d_ff=2048, dropout=0.1, max_seq_length=5000):
        super().__init__(src_vocab_size, tgt_vocab_size, d_model, num_layers, num_heads, d_ff,
                         dropout, max_seq_length, 0)


class TransformerWrappingTheReference(nn.Module):
    def __init__(self, src_vocab_size, tgt_vocab_size, d_model=512, num_layers=6, num_heads=8,
                 d_ff=2048, dropout=0.1, max_seq_length=5000, pad_idx=0):
        super().__init__()
        self.inner = course_utils.reference.Transformer(src_vocab_size, tgt_vocab_size, d_model,
                                                        num_layers, num_heads, d_ff, dropout,
                                                        max_seq_length, pad_idx)

    def forward(self, src, tgt):
        return self.inner(src, tgt)


class TransformerInlineMasks(nn.Module):
    """Masks built inline, Glorot init, keyword construction of the reference stacks."""

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d_model: int = 512,
                 num_layers: int = 6, num_heads: int = 8, d_ff: int = 2048, dropout: float = 0.1,
                 max_seq_length: int = 5000, pad_idx: int = 0) -> None:
        super().__init__()
        common = dict(d_model=d_model, num_layers=num_layers, num_heads=num_heads, d_ff=d_ff,
                      dropout=dropout, max_seq_length=max_seq_length)
        self.generator = nn.Linear(d_model, tgt_vocab_size, bias=False)
        self.encoder = Encoder(src_vocab_size, **common)
        self.decoder = Decoder(tgt_vocab_size, **common)
        self.pad = pad_idx
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(self, src, src_mask=None):
        return self.encoder(src, src_mask)

    def decode(self, tgt, memory, src_mask=None, tgt_mask=None):
        return self.decoder(tgt, memory, src_mask, tgt_mask)

    def forward(self, src, tgt):
        lt = tgt.size(1)
        src_mask = src.ne(self.pad).unsqueeze(-2).unsqueeze(-2)
        future = torch.arange(lt, device=tgt.device)
        tgt_mask = tgt.ne(self.pad)[:, None, None, :] & (future[:, None] >= future[None, :])
        memory = self.encode(src, src_mask)
        out = self.decode(tgt, memory, src_mask, tgt_mask)
        return self.generator(out)


class _BuiltinStack(nn.Module):
    """An encoder or decoder of PyTorch's own layers, with the course's interface and masks."""

    def __init__(self, vocab_size, d_model, num_layers, num_heads, d_ff, dropout, max_seq_length,
                 decoder: bool):
        super().__init__()
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positional_encoding = PositionalEncoding(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)
        layer = (nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer)(
            d_model, num_heads, d_ff, dropout, batch_first=True)
        stack = nn.TransformerDecoder if decoder else nn.TransformerEncoder
        kwargs = {} if decoder else {"enable_nested_tensor": False}
        self.stack = stack(layer, num_layers, **kwargs)
        self.layers = self.stack.layers

    def embed(self, ids):
        return self.dropout(self.positional_encoding(self.embedding(ids) * math.sqrt(self.d_model)))

    @staticmethod
    def _key_padding(mask):
        return None if mask is None else ~mask[:, 0, 0, :]


class _OwnEncoder(_BuiltinStack):
    def __init__(self, *args):
        super().__init__(*args, decoder=False)

    def forward(self, src, src_mask=None):
        return self.stack(self.embed(src), src_key_padding_mask=self._key_padding(src_mask))


class _OwnDecoder(_BuiltinStack):
    def __init__(self, *args):
        super().__init__(*args, decoder=True)

    def forward(self, tgt, memory, src_mask=None, tgt_mask=None):
        lt = tgt.size(1)
        self_mask = None if tgt_mask is None else ~tgt_mask.expand(-1, 1, lt, lt)[:, 0]
        heads = self.layers[0].self_attn.num_heads
        if self_mask is not None:
            self_mask = self_mask.repeat_interleave(heads, dim=0)
        return self.stack(self.embed(tgt), memory, tgt_mask=self_mask,
                          memory_key_padding_mask=self._key_padding(src_mask))


class TransformerOwnStacks(nn.Module):
    """Stands for a student's own encoder and decoder: PyTorch's layers behind the course API."""

    def __init__(self, src_vocab_size, tgt_vocab_size, d_model=512, num_layers=6, num_heads=8,
                 d_ff=2048, dropout=0.1, max_seq_length=5000, pad_idx=0):
        super().__init__()
        args = (d_model, num_layers, num_heads, d_ff, dropout, max_seq_length)
        self.encoder = _OwnEncoder(src_vocab_size, *args)
        self.decoder = _OwnDecoder(tgt_vocab_size, *args)
        self.generator = nn.Linear(d_model, tgt_vocab_size)
        self.pad_idx = pad_idx

    def encode(self, src, src_mask):
        return self.encoder(src, src_mask)

    def decode(self, tgt, memory, src_mask, tgt_mask):
        return self.decoder(tgt, memory, src_mask, tgt_mask)

    def forward(self, src, tgt):
        src_mask, tgt_mask = masks_with_logical_and(src, tgt, self.pad_idx)
        return self.generator(self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask))


CATALOGUE: dict[str, Catalogue] = {
    "check_create_padding_mask": Catalogue(
        reference=reference.create_padding_mask,
        mutants=[
            Mutant("stub", padding_stub, r"create_padding_mask\(seq, pad_idx=0\) on cpu is not implemented yet"),
            Mutant("inverted", padding_inverted, r"Likely mistake: the mask is inverted: True means 'may attend'"),
            Mutant("on_query_axis", padding_on_query_axis,
                   r"has shape \(3, 1, 7, 1\), expected \(3, 1, 1, 7\)(.|\n)*padding is on the query axis"),
            Mutant("float", padding_float, r"has dtype torch\.float32, expected torch\.bool"),
            Mutant("int", padding_int, r"has dtype torch\.int64, expected torch\.bool(.|\n)*~1 == -2"),
            Mutant("no_new_axes", padding_no_new_axes,
                   r"has shape \(3, 7\), expected \(3, 1, 1, 7\)(.|\n)*add the head and query axes"),
            Mutant("axes_in_front", padding_axes_in_front,
                   r"has shape \(1, 1, 3, 7\)(.|\n)*went in front of the batch axis"),
            Mutant("hard_coded_zero", padding_hard_coded_zero,
                   r"pad_idx=3(.|\n)*the padding index is fixed at 0"),
            Mutant("wraps_the_reference", padding_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own create_padding_mask"),
        ],
        correct=[padding_ne_view, padding_indexing, padding_logical_not],
    ),
    "check_create_causal_mask": Catalogue(
        reference=reference.create_causal_mask,
        mutants=[
            Mutant("stub", causal_stub, r"create_causal_mask\(5\) is not implemented yet"),
            Mutant("without_diagonal", causal_without_diagonal,
                   r"query 0, key 0: yours is False, expected True(.|\n)*the diagonal is masked"),
            Mutant("shifted_by_one", causal_shifted_by_one, r"shifted by one: position i also sees"),
            Mutant("upper_triangular", causal_upper_triangular,
                   r"upper triangle lets each position see the future"),
            Mutant("pytorch_convention", causal_pytorch_convention,
                   r"the mask is inverted(.|\n)*nn\.Transformer's masks \(True = blocked\)"),
            Mutant("float", causal_float, r"dtype torch\.float32, expected torch\.bool"),
            Mutant("two_dims", causal_two_dims,
                   r"has shape \(5, 5\), expected \(1, 1, 5, 5\)(.|\n)*add a batch and a head axis"),
            Mutant("no_device_parameter", causal_no_device_parameter,
                   r"unexpected keyword argument 'device'(.|\n)*Hint: give your function a device parameter"),
            Mutant("wraps_the_reference", causal_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own create_causal_mask"),
        ],
        correct=[causal_arange, causal_not_triu, causal_from_builtin],
    ),
    "check_create_masks": Catalogue(
        reference=reference.create_masks,
        mutants=[
            Mutant("stub", masks_stub, r"is not implemented yet"),
            Mutant("target_causal_only", masks_target_causal_only,
                   r"tgt_mask .* has shape \(1, 1, 8, 8\), expected \(3, 1, 8, 8\)"
                   r"(.|\n)*the causal mask alone"),
            Mutant("target_causal_only_expanded", masks_target_causal_only_expanded,
                   r"tgt_mask has no padding part"),
            Mutant("target_padding_only", masks_target_padding_only,
                   r"has shape \(3, 1, 1, 8\)(.|\n)*the target's padding mask alone"),
            Mutant("or_instead_of_and", masks_or_instead_of_and, r"combined with \| \(or\)"),
            Mutant("target_padding_on_query_axis", masks_target_padding_on_query_axis,
                   r"the target padding is on the query axis"),
            Mutant("swapped", masks_swapped, r"src_mask .*(.|\n)*the masks come back in the wrong order"),
            Mutant("source_from_target", masks_source_from_target, r"src_mask was built from tgt"),
            Mutant("float", masks_float, r"tgt_mask .* has dtype torch\.float32, expected torch\.bool"),
            Mutant("causal_without_diagonal", masks_causal_without_diagonal,
                   r"the causal part misses the diagonal"),
            Mutant("wraps_the_reference", masks_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own create_masks"),
        ],
        correct=[masks_with_logical_and, masks_from_reference_pieces],
    ),
    "check_transformer": Catalogue(
        reference=reference.Transformer,
        mutants=[
            Mutant("stub", TransformerStub, r"Transformer\(11, 13, .*\) is not implemented yet"),
            Mutant("forward_stub", TransformerForwardStub, r"Transformer\.forward\(src, tgt\) .* is not implemented yet"),
            Mutant("softmax_in_generator", TransformerSoftmaxInGenerator,
                   r"generator contains Softmax: the generator must return logits, not probabilities"),
            Mutant("log_softmax_in_generator", TransformerLogSoftmaxInGenerator,
                   r"generator contains LogSoftmax"),
            Mutant("softmax_in_forward", TransformerSoftmaxInForward,
                   r"Likely mistake: the logits went through a softmax"),
            Mutant("log_softmax_in_forward", TransformerLogSoftmaxInForward,
                   r"Likely mistake: the logits went through a log_softmax"),
            Mutant("masks_swapped", TransformerMasksSwapped,
                   r"raised RuntimeError: The size of tensor a(.|\n)*Hint: a mask does not fit(.|\n)*"
                   r"Are src_mask and tgt_mask swapped\?"),
            Mutant("no_masks", TransformerNoMasks, r"Likely mistake: no masks are used"),
            Mutant("target_mask_causal_only", TransformerTargetMaskCausalOnly,
                   r"Likely mistake: the target mask has no padding part"),
            Mutant("pad_idx_zero", TransformerPadZero,
                   r"Likely mistake: the masks were built with padding index 0 instead of self\.pad_idx"),
            Mutant("no_cross_attention_mask", TransformerNoCrossMask,
                   r"Likely mistake: the decoder gets no src_mask"),
            Mutant("named_output_layer", TransformerNamedOutputLayer,
                   r"Transformer has no attribute generator: in __init__, create self\.generator = "
                   r"nn\.Linear\(d_model, tgt_vocab_size\)"),
            Mutant("vocab_swapped", TransformerVocabSwapped,
                   r"generator is nn\.Linear\(16, 11\), expected nn\.Linear\(16, 13\)(.|\n)*SOURCE vocabulary"),
            Mutant("generator_in_decode", TransformerGeneratorInDecode,
                   r"decode\(.*has shape \(3, 5, 13\), expected \(3, 5, 16\)(.|\n)*before the generator"),
            Mutant("encode_ignores_mask", TransformerEncodeIgnoresMask,
                   r"Likely mistake: encode ignores src_mask"),
            Mutant("detached", TransformerDetached, r"carries no gradient"),
            Mutant("without_pad_idx", TransformerWithoutPadIdx, r"the parameter pad_idx is missing"),
            Mutant("wraps_the_reference", TransformerWrappingTheReference,
                   r"your code calls course_utils\.reference's own Transformer"),
        ],
        correct=[_Base, TransformerInlineMasks, TransformerOwnStacks],
    ),
}

BUG = Bug("transformer_solution",
          "return self.generator(self.decode(tgt, memory, src_mask, tgt_mask))",
          "return torch.softmax(self.generator(self.decode(tgt, memory, src_mask, tgt_mask)), dim=-1)")


# --------------------------------------------------------------------------------------
# Code that works on the CPU only: rejected on a GPU, and under checks' fake_accelerator()
# --------------------------------------------------------------------------------------


def causal_ignores_device(size: int, device=None) -> Tensor:
    """Takes device= but never uses it: the mask stays on the CPU."""
    return torch.ones(size, size, dtype=torch.bool).tril()[None, None]


class TransformerCausalMaskOnTheCpu(_Base):
    """Builds its causal mask without device=: fine on the CPU, an error on a GPU."""

    def forward(self, src, tgt):
        src_mask = reference.create_padding_mask(src, self.pad_idx)
        causal = torch.ones(tgt.size(1), tgt.size(1), dtype=torch.bool).tril()
        tgt_mask = reference.create_padding_mask(tgt, self.pad_idx) & causal
        return self.generator(self.decode(tgt, self.encode(src, src_mask), src_mask, tgt_mask))


DEVICE_MUTANTS: dict[str, list[Mutant]] = {
    "check_create_causal_mask": [
        Mutant("ignores_device", causal_ignores_device, r"device='cpu'\) is on meta|is on (meta|cpu), (but|expected)"),
    ],
    "check_transformer": [
        Mutant("causal_mask_on_the_cpu", TransformerCausalMaskOnTheCpu,
               r"raised RuntimeError(.|\n)*Hint: a tensor your code created is on another device than the inputs"),
    ],
}
