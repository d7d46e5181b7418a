"""Known-wrong and correct answers for chapter 09_multi30k's checks.

Each mutant is a realistic student mistake; its ``expect`` pins the diagnosis the check gives
(a regular expression searched in the AssertionError's message). The correct answers are
written differently from the reference and must pass every visible and hidden call.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from course_utils import reference
from course_utils.reference import translation
from course_utils.reference.decoding import greedy_decode as reference_greedy_decode
from course_utils.reference.masking import create_causal_mask, create_padding_mask
from tests.support import Bug, Catalogue, Mutant

# --------------------------------------------------------------------------------------
# collate_batch(pairs, pad_idx) -> (src (B, Ls), tgt (B, Lt))
# --------------------------------------------------------------------------------------


def collate_stub(pairs, pad_idx):
    # YOUR CODE HERE
    raise NotImplementedError()


def collate_sequence_first(pairs, pad_idx):
    src = pad_sequence([torch.tensor(s) for s, _ in pairs], padding_value=pad_idx)
    tgt = pad_sequence([torch.tensor(t) for _, t in pairs], padding_value=pad_idx)
    return src, tgt


def collate_pad_zero(pairs, pad_idx):
    src = pad_sequence([torch.tensor(s) for s, _ in pairs], batch_first=True)
    tgt = pad_sequence([torch.tensor(t) for _, t in pairs], batch_first=True)
    return src, tgt


def collate_common_length(pairs, pad_idx):
    longest = max(max(len(s), len(t)) for s, t in pairs)
    src = torch.tensor([s + [pad_idx] * (longest - len(s)) for s, _ in pairs])
    tgt = torch.tensor([t + [pad_idx] * (longest - len(t)) for _, t in pairs])
    return src, tgt


def collate_left_padding(pairs, pad_idx):
    ls = max(len(s) for s, _ in pairs)
    lt = max(len(t) for _, t in pairs)
    src = torch.tensor([[pad_idx] * (ls - len(s)) + s for s, _ in pairs])
    tgt = torch.tensor([[pad_idx] * (lt - len(t)) + t for _, t in pairs])
    return src, tgt


def collate_float(pairs, pad_idx):
    ls = max(len(s) for s, _ in pairs)
    lt = max(len(t) for _, t in pairs)
    src = torch.full((len(pairs), ls), pad_idx)  # a float fill value: float32 tensors... with an int, long
    src = src.float()
    tgt = torch.full((len(pairs), lt), pad_idx).float()
    for i, (s, t) in enumerate(pairs):
        src[i, : len(s)] = torch.tensor(s)
        tgt[i, : len(t)] = torch.tensor(t)
    return src, tgt


def collate_sorted(pairs, pad_idx):
    pairs = sorted(pairs, key=lambda p: len(p[0]), reverse=True)  # "like pack_padded_sequence wants"
    return translation.collate_batch.__wrapped__(pairs, pad_idx)


def collate_in_place(pairs, pad_idx):
    ls = max(len(s) for s, _ in pairs)
    lt = max(len(t) for _, t in pairs)
    for s, t in pairs:
        s.extend([pad_idx] * (ls - len(s)))
        t.extend([pad_idx] * (lt - len(t)))
    return torch.tensor([s for s, _ in pairs]), torch.tensor([t for _, t in pairs])


def collate_wrapping_the_reference(pairs, pad_idx):
    return reference.translation.collate_batch(pairs, pad_idx)


def collate_pad_zero_then_replace(pairs, pad_idx):
    """Pads with 0, then turns every 0 into pad_idx: real tokens with id 0 become padding."""
    def pad(rows):
        out = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out.masked_fill(out == 0, pad_idx)
    return pad([s for s, _ in pairs]), pad([t for _, t in pairs])


def collate_pad_sequence(pairs, pad_idx):
    sources, targets = zip(*pairs)
    return (pad_sequence([torch.as_tensor(s) for s in sources], batch_first=True, padding_value=pad_idx),
            pad_sequence([torch.as_tensor(t) for t in targets], batch_first=True, padding_value=pad_idx))


def collate_lists(pairs, pad_idx):
    def pad(rows):
        width = max(map(len, rows))
        return torch.tensor([list(r) + [pad_idx] * (width - len(r)) for r in rows], dtype=torch.long)

    return pad([s for s, _ in pairs]), pad([t for _, t in pairs])


def collate_f_pad(pairs, pad_idx):
    ls = max(len(s) for s, _ in pairs)
    lt = max(len(t) for _, t in pairs)
    src = torch.stack([F.pad(torch.tensor(s), (0, ls - len(s)), value=pad_idx) for s, _ in pairs])
    tgt = torch.stack([F.pad(torch.tensor(t), (0, lt - len(t)), value=pad_idx) for _, t in pairs])
    return src, tgt


# --------------------------------------------------------------------------------------
# batch_by_tokens(lengths, max_tokens) -> list of index lists
# --------------------------------------------------------------------------------------


def batching_stub(lengths, max_tokens):
    # YOUR CODE HERE
    raise NotImplementedError()


def _fill(order, lengths, max_tokens):
    batches, current, longest = [], [], 0
    for i in order:
        grown = max(longest, lengths[i])
        if current and grown * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
    return batches


def batching_unsorted(lengths, max_tokens):
    return _fill(range(len(lengths)), lengths, max_tokens)


def batching_sum_of_lengths(lengths, max_tokens):
    batches, current, total = [], [], 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if current and total + lengths[i] > max_tokens:
            batches.append(current)
            current, total = [], 0
        current.append(i)
        total += lengths[i]
    if current:
        batches.append(current)
    return batches


def batching_drops_last(lengths, max_tokens):
    batches, current, longest = [], [], 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        grown = max(longest, lengths[i])
        if current and grown * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    return batches  # the last batch is never appended


def batching_one_per_batch(lengths, max_tokens):
    return [[i] for i in sorted(range(len(lengths)), key=lambda i: lengths[i])]


def batching_sorts_in_place(lengths, max_tokens):
    lengths.sort()
    return _fill(range(len(lengths)), lengths, max_tokens)


def batching_checks_after_adding(lengths, max_tokens):
    batches, current = [], []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        current.append(i)
        if len(current) * max(lengths[j] for j in current) >= max_tokens:  # too late: already over
            batches.append(current)
            current = []
    if current:
        batches.append(current)
    return batches


def batching_skips_overlong(lengths, max_tokens):
    order = [i for i in sorted(range(len(lengths)), key=lambda i: lengths[i]) if lengths[i] <= max_tokens]
    return _fill(order, lengths, max_tokens)


def batching_wrapping_the_reference(lengths, max_tokens):
    return reference.translation.batch_by_tokens(lengths, max_tokens)


def batching_longest_first(lengths, max_tokens):
    return _fill(sorted(range(len(lengths)), key=lambda i: -lengths[i]), lengths, max_tokens)


def batching_numpy(lengths, max_tokens):
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end + 1 - start) * lengths[order[end]] <= max_tokens:
            end += 1
        batches.append(order[start:end].tolist())
        start = end
    return batches


def batching_tuples(lengths, max_tokens):
    """Sorts (length, index) tuples; recomputes the padded size of the candidate batch each time."""
    batches = [[]]
    for length, i in sorted((n, i) for i, n in enumerate(lengths)):
        candidate = batches[-1] + [i]
        if batches[-1] and len(candidate) * max(lengths[j] for j in candidate) > max_tokens:
            batches.append([i])
        else:
            batches[-1] = candidate
    return batches


# --------------------------------------------------------------------------------------
# train_epoch(model, batches, optimizer, scheduler, criterion, pad_idx, clip_norm=1.0)
# --------------------------------------------------------------------------------------


def train_stub(model, batches, optimizer, scheduler, criterion, pad_idx, clip_norm=1.0):
    # YOUR CODE HERE
    raise NotImplementedError()


def _train(model, batches, optimizer, scheduler, criterion, pad_idx, clip_norm=1.0, *, zero_grad="before",
           shift=True, scheduler_step="after", clip=True, clip_value=None, weight="real", call_train=True,
           own_loss=False, targets_unshifted=False):
    """The right loop with one mistake switched on."""
    if call_train:
        model.train()
    total, tokens, losses = 0.0, 0, []
    for src, tgt in batches:
        tgt_in = tgt[:, :-1] if shift else tgt
        tgt_out = tgt[:, :-1] if targets_unshifted else (tgt[:, 1:] if shift else tgt)
        logits = model(src, tgt_in)
        flat_logits = logits.reshape(-1, logits.size(-1))
        if own_loss:
            loss = F.cross_entropy(flat_logits, tgt_out.reshape(-1), label_smoothing=0.1)
        else:
            loss = criterion(flat_logits, tgt_out.reshape(-1))
        if zero_grad == "before":
            optimizer.zero_grad()
        loss.backward()
        if zero_grad == "after_backward":
            optimizer.zero_grad()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip_value if clip_value is not None else clip_norm)
        if scheduler_step == "before":
            scheduler.step()
        optimizer.step()
        if scheduler_step == "after":
            scheduler.step()
        n = int((tgt_out != pad_idx).sum()) if weight == "real" else tgt_out.numel()
        losses.append(loss.item())
        total += loss.item() * n
        tokens += n
    if scheduler_step == "epoch":
        scheduler.step()
    if weight == "batch_mean":
        return sum(losses) / len(losses)
    return total / tokens


def train_no_zero_grad(*args):
    return _train(*args, zero_grad="never")


def train_no_shift(*args):
    return _train(*args, shift=False)


def train_scheduler_never_stepped(*args):
    return _train(*args, scheduler_step="never")


def train_padding_in_loss(*args):
    return _train(*args, own_loss=True)


def train_padding_in_mean(*args):
    return _train(*args, weight="numel")


def train_no_clipping(*args):
    return _train(*args, clip=False)


def train_clip_to_one(*args):
    return _train(*args, clip_value=1.0)


def train_scheduler_before_optimizer(*args):
    return _train(*args, scheduler_step="before")


def train_scheduler_per_epoch(*args):
    return _train(*args, scheduler_step="epoch")


def train_zero_grad_after_backward(*args):
    return _train(*args, zero_grad="after_backward")


def train_mean_of_batch_means(*args):
    return _train(*args, weight="batch_mean")


def train_no_model_train(*args):
    return _train(*args, call_train=False)


def train_targets_unshifted(*args):
    return _train(*args, targets_unshifted=True)


def train_wrapping_the_reference(*args):
    return reference.translation.train_epoch(*args)


def train_indexes_the_batches(model, batches, optimizer, scheduler, criterion, pad_idx, clip_norm=1.0):
    """Right on a list; chapter 9 hands over a generator."""
    model.train()
    total, tokens = 0.0, 0
    for i in range(len(batches)):
        src, tgt = batches[i]
        loss = criterion(model(src, tgt[:, :-1]).flatten(0, 1), tgt[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        scheduler.step()
        n = int((tgt[:, 1:] != pad_idx).sum())
        total, tokens = total + loss.item() * n, tokens + n
    return total / tokens


def train_counts_tokens_first(model, batches, optimizer, scheduler, criterion, pad_idx, clip_norm=1.0):
    """Two passes over the batches: the first counts the real tokens, the second (empty, on a generator) trains."""
    model.train()
    tokens = sum(int((tgt[:, 1:] != pad_idx).sum()) for _, tgt in batches)
    total = 0.0
    for src, tgt in batches:
        loss = criterion(model(src, tgt[:, :-1]).flatten(0, 1), tgt[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        scheduler.step()
        total += loss.item() * int((tgt[:, 1:] != pad_idx).sum())
    return total / tokens


def train_sets_the_training_flag(model, *args):
    """model.training = True instead of model.train(): the submodules stay in eval mode."""
    model.training = True
    return _train(model, *args, call_train=False)


def train_zero_grad_at_the_end(model, batches, optimizer, scheduler, criterion, pad_idx, clip_norm=1.0):
    """model.zero_grad() before the loop and after every step; a tensor accumulator."""
    model.train()
    model.zero_grad()
    total, count = torch.zeros(()), 0
    for src, tgt in batches:
        decoder_input, labels = tgt[:, :-1], tgt[:, 1:]
        loss = criterion(model(src, decoder_input).flatten(0, 1), labels.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), max_norm=clip_norm)
        optimizer.step()
        scheduler.step()
        model.zero_grad()
        real = labels.ne(pad_idx).sum()
        total = total + loss.detach().cpu() * real.cpu()
        count += int(real)
    return float(total / count)


def train_real_tokens_only(model, batches, optimizer, scheduler, criterion, pad_idx, clip_norm=1.0):
    """Selects the real positions before the criterion (the same mean)."""
    model.train()
    weighted, tokens = [], []
    for src, tgt in batches:
        keep = tgt[:, 1:] != pad_idx
        logits = model(src, tgt[:, :-1])
        loss = criterion(logits[keep], tgt[:, 1:][keep])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        scheduler.step()
        weighted.append(loss.item() * int(keep.sum()))
        tokens.append(int(keep.sum()))
    return sum(weighted) / sum(tokens)


# --------------------------------------------------------------------------------------
# greedy_decode(model, src, max_len, bos_idx, eos_idx, pad_idx=0) -> (B, L)
# --------------------------------------------------------------------------------------


def decode_stub(model, src, max_len, bos_idx, eos_idx, pad_idx=0):
    # YOUR CODE HERE
    raise NotImplementedError()


def _decode(model, src, max_len, bos_idx, eos_idx, pad_idx=0, *, src_mask=True, causal=True, position=-1,
            pad_after_eos=True, stop="all", steps=None, keep_bos=True, specials=None):
    if specials is not None:
        bos_idx, eos_idx, pad_idx = specials
    with torch.no_grad():
        mask = create_padding_mask(src, pad_idx) if src_mask else None
        memory = model.encode(src, mask)
        ys = torch.full((src.size(0), 1), bos_idx, dtype=torch.long, device=src.device)
        done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
        for _ in range(steps if steps is not None else max_len - 1):
            tgt_mask = create_causal_mask(ys.size(1), device=src.device) if causal else None
            token = model.generator(model.decode(ys, memory, mask, tgt_mask)[:, position]).argmax(-1)
            if pad_after_eos:
                token = token.masked_fill(done, pad_idx)
            ys = torch.cat([ys, token[:, None]], dim=1)
            done |= token == eos_idx
            if (stop == "all" and done.all()) or (stop == "any" and done.any()):
                break
    return ys if keep_bos else ys[:, 1:]


def decode_no_padding_after_eos(*args):
    return _decode(*args, pad_after_eos=False)


def decode_stops_at_first_eos(*args):
    return _decode(*args, stop="any")


def decode_no_source_mask(*args):
    return _decode(*args, src_mask=False)


def decode_no_causal_mask(*args):
    return _decode(*args, causal=False)


def decode_first_position(*args):
    return _decode(*args, position=0)


def decode_max_len_steps(*args):
    model, src, max_len = args[:3]
    return _decode(*args, steps=max_len)


def decode_without_bos(*args):
    return _decode(*args, keep_bos=False)


def decode_toy_specials(*args):
    return _decode(*args, specials=(1, 2, 0))  # bos, eos, pad of chapter 7's toy tasks


def decode_capped_by_source(model, src, max_len, bos_idx, eos_idx, pad_idx=0):
    """Never decodes past the source's length (plus <eos>): translations are often longer."""
    return _decode(model, src, min(max_len, src.size(1) + 1), bos_idx, eos_idx, pad_idx)


def decode_one_list_per_sentence(model, src, max_len, bos_idx, eos_idx, pad_idx=0):
    return [_decode(model, src[i:i + 1], max_len, bos_idx, eos_idx, pad_idx)[0] for i in range(src.size(0))]


def decode_sampling(model, src, max_len, bos_idx, eos_idx, pad_idx=0):
    torch.manual_seed(0)
    mask = create_padding_mask(src, pad_idx)
    memory = model.encode(src, mask)
    ys = torch.full((src.size(0), 1), bos_idx, dtype=torch.long, device=src.device)
    done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for _ in range(max_len - 1):
        logits = model.generator(model.decode(ys, memory, mask, create_causal_mask(ys.size(1), src.device))[:, -1])
        token = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(1).masked_fill(done, pad_idx)
        ys = torch.cat([ys, token[:, None]], dim=1)
        done |= token == eos_idx
        if done.all():
            break
    return ys


def decode_wrapping_the_reference(*args):
    return reference_greedy_decode(*args)


def decode_one_at_a_time(model, src, max_len, bos_idx, eos_idx, pad_idx=0):
    """Each sentence alone, through model.forward, without its padding; then padded together."""
    outputs = []
    with torch.no_grad():
        for row in src:
            sentence = row[row != pad_idx].unsqueeze(0)
            ys = [bos_idx]
            while len(ys) < max_len:
                logits = model(sentence, torch.tensor([ys], device=src.device))
                ys.append(int(logits[0, -1].argmax()))
                if ys[-1] == eos_idx:
                    break
            outputs.append(torch.tensor(ys, device=src.device))
    return pad_sequence(outputs, batch_first=True, padding_value=pad_idx)


def decode_to_max_len(model, src, max_len, bos_idx, eos_idx, pad_idx=0):
    """Never stops early: every row runs to max_len, padded after <eos>."""
    src_mask = (src != pad_idx)[:, None, None, :]
    memory = model.encode(src, src_mask)
    out = torch.full((src.size(0), max_len), pad_idx, dtype=torch.long, device=src.device)
    out[:, 0] = bos_idx
    alive = torch.ones(src.size(0), dtype=torch.bool, device=src.device)
    with torch.no_grad():
        for t in range(1, max_len):
            causal = torch.tril(torch.ones(t, t, dtype=torch.bool, device=src.device))
            state = model.decode(out[:, :t], memory, src_mask, causal)[:, -1]
            nxt = model.generator(state).argmax(-1)
            out[:, t] = torch.where(alive, nxt, torch.full_like(nxt, pad_idx))
            alive &= nxt != eos_idx
    return out


def decode_drop_finished(model, src, max_len, bos_idx, eos_idx, pad_idx=0):
    """Removes finished sentences from the batch as it goes (less work per step)."""
    batch = src.size(0)
    src_mask = create_padding_mask(src, pad_idx)
    with torch.no_grad():
        memory = model.encode(src, src_mask)
        out = torch.full((batch, 1), bos_idx, dtype=torch.long, device=src.device)
        active = torch.arange(batch, device=src.device)
        results = [None] * batch
        for _ in range(max_len - 1):
            ys = out[active]
            states = model.decode(ys, memory[active], src_mask[active],
                                  create_causal_mask(ys.size(1), device=src.device))
            nxt = model.generator(states[:, -1]).argmax(-1)
            column = torch.full((batch, 1), pad_idx, dtype=torch.long, device=src.device)
            column[active, 0] = nxt
            out = torch.cat([out, column], dim=1)
            active = active[nxt != eos_idx]
            if active.numel() == 0:
                break
    return out


CATALOGUE: dict[str, Catalogue] = {
    "check_collate_batch": Catalogue(
        reference=translation.collate_batch,
        mutants=[
            Mutant("stub", collate_stub, r"not implemented yet"),
            Mutant("sequence_first", collate_sequence_first, r"it is sequence-first(.|\n)*batch_first=True"),
            Mutant("pad_with_zero", collate_pad_zero,
                   r"its padding positions hold \[0\], not pad_idx=7. Fill with the pad_idx argument"),
            Mutant("pad_with_zero_then_replace", collate_pad_zero_then_replace,
                   r"turned the real tokens with id 0 into pad_idx=7"),
            Mutant("one_common_length", collate_common_length,
                   r"padded to the longest sentence of both sides"),
            Mutant("left_padding", collate_left_padding, r"is padded on the left"),
            Mutant("float_dtype", collate_float, r"has dtype torch.float32, expected torch.long"),
            Mutant("sorted_by_length", collate_sorted, r"right rows in another order"),
            Mutant("pads_the_input_in_place", collate_in_place, r"changed the lists it was given"),
            Mutant("wraps_the_reference", collate_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own collate_batch"),
        ],
        correct=[collate_pad_sequence, collate_lists, collate_f_pad],
    ),
    "check_batch_by_tokens": Catalogue(
        reference=translation.batch_by_tokens,
        mutants=[
            Mutant("stub", batching_stub, r"not implemented yet"),
            Mutant("not_sorted", batching_unsorted,
                   r"are padding \(sorting by length first gives 1%\): sort the indices by length"),
            Mutant("sum_of_lengths", batching_sum_of_lengths,
                   r"over max_tokens=64(.|\n)*you counted the real tokens \(the sum of lengths\)"),
            Mutant("drops_the_last_batch", batching_drops_last,
                   r"are in no batch(.|\n)*the last batch(.|\n)*was dropped"),
            Mutant("one_sentence_per_batch", batching_one_per_batch, r"made 300 batches where \d+ suffice"),
            Mutant("sorts_lengths_in_place", batching_sorts_in_place, r"changed the lengths list"),
            Mutant("checks_the_budget_too_late", batching_checks_after_adding,
                   r"over max_tokens=64(.|\n)*one sentence over: check the budget before adding"),
            Mutant("skips_overlong_sentences", batching_skips_overlong,
                   r"with one sentence of 69 tokens(.|\n)*longer than max_tokens=64 was left out"),
            Mutant("wraps_the_reference", batching_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own batch_by_tokens"),
        ],
        correct=[batching_longest_first, batching_numpy, batching_tuples],
    ),
    "check_train_epoch": Catalogue(
        reference=translation.train_epoch,
        mutants=[
            Mutant("stub", train_stub, r"not implemented yet"),
            Mutant("no_zero_grad", train_no_zero_grad, r"optimizer\.zero_grad\(\) is never called"),
            Mutant("no_shift", train_no_shift, r"the decoder was given the whole target tgt"),
            Mutant("scheduler_never_stepped", train_scheduler_never_stepped,
                   r"scheduler\.step\(\) is never called"),
            Mutant("padding_in_the_loss", train_padding_in_loss,
                   r"never called criterion \(on cpu, 4 batches\), so padding is scored like real tokens"),
            Mutant("padding_in_the_mean", train_padding_in_mean,
                   r"Likely mistake: the mean counts padding"),
            Mutant("no_clipping", train_no_clipping,
                   r"not clipped to clip_norm=0\.05(.|\n)*call torch\.nn\.utils\.clip_grad_norm_"),
            Mutant("clips_to_a_fixed_norm", train_clip_to_one, r"they look clipped to 1\.0"),
            Mutant("scheduler_before_optimizer", train_scheduler_before_optimizer,
                   r"scheduler\.step\(\) is called before optimizer\.step\(\)"),
            Mutant("scheduler_once_per_epoch", train_scheduler_per_epoch,
                   r"scheduler\.step\(\) was called 1 times for 4 batches"),
            Mutant("zero_grad_after_backward", train_zero_grad_after_backward,
                   r"comes between loss\.backward\(\) and optimizer\.step\(\)"),
            Mutant("mean_of_batch_means", train_mean_of_batch_means,
                   r"Likely mistake: it is the plain average of the batches' losses"),
            Mutant("no_model_train", train_no_model_train, r"call model\.train\(\) at the start"),
            Mutant("sets_the_training_flag", train_sets_the_training_flag,
                   r"submodules ran in eval mode during training(.|\n)*Call model\.train\(\)"),
            Mutant("indexes_the_batches", train_indexes_the_batches,
                   r"raised TypeError(.|\n)*Hint: batches is an iterable that can be read only once"),
            Mutant("counts_tokens_first", train_counts_tokens_first,
                   r"read batches 2 times and trained on 0 of 4 batches(.|\n)*can be read only once"),
            Mutant("targets_not_shifted", train_targets_unshifted,
                   r"compares the logits with tgt\[:, :-1\] \(on cpu, 4 batches\), the decoder's own input"),
            Mutant("wraps_the_reference", train_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own train_epoch"),
        ],
        correct=[train_zero_grad_at_the_end, train_real_tokens_only],
    ),
    "check_greedy_decode": Catalogue(
        reference=reference_greedy_decode,
        mutants=[
            Mutant("stub", decode_stub, r"not implemented yet"),
            Mutant("no_padding_after_eos", decode_no_padding_after_eos,
                   r"Likely mistake: after <eos>, a finished sentence must only grow padding"),
            Mutant("stops_at_the_first_eos", decode_stops_at_first_eos,
                   r"Likely mistake: the decoding stops as soon as one sentence has produced <eos>"),
            Mutant("no_source_mask", decode_no_source_mask,
                   r"Likely mistake: the source padding mask is missing"),
            Mutant("no_causal_mask", decode_no_causal_mask,
                   r"Likely mistake: the decoder ran without the causal mask"),
            Mutant("first_position", decode_first_position,
                   r"Likely mistake: the next token was taken from the first position's logits"),
            Mutant("max_len_steps", decode_max_len_steps, r"more than max_len=7"),
            Mutant("without_bos", decode_without_bos, r"does not start every row with <bos>"),
            Mutant("toy_specials", decode_toy_specials, r"does not start every row with <bos> \(bos_idx=2\)"),
            Mutant("capped_by_the_source_length", decode_capped_by_source,
                   r"stops at about the source's length \(3 tokens\)"),
            Mutant("list_per_sentence", decode_one_list_per_sentence, r"return one tensor \(B, L\)"),
            Mutant("sampling", decode_sampling, r"pad_idx=0\) on cpu (differs from the expected tokens|has shape)"),
            Mutant("wraps_the_reference", decode_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own greedy_decode"),
        ],
        correct=[decode_one_at_a_time, decode_to_max_len, decode_drop_finished],
    ),
}

BUG = Bug("train_epoch_solution", "        scheduler.step()\n", "")


# --------------------------------------------------------------------------------------
# Code that works on the CPU only: rejected on a GPU, and under checks' fake_accelerator()
# --------------------------------------------------------------------------------------


def decode_start_on_the_cpu(model, src, max_len, bos_idx, eos_idx, pad_idx=0):
    """Starts from a <bos> column created without device=."""
    src_mask = create_padding_mask(src, pad_idx)
    memory = model.encode(src, src_mask)
    ys = torch.full((src.size(0), 1), bos_idx, dtype=torch.long)
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for _ in range(max_len - 1):
        states = model.decode(ys, memory, src_mask, create_causal_mask(ys.size(1), device=src.device))
        token = model.generator(states[:, -1]).argmax(-1).masked_fill(finished, pad_idx)
        ys = torch.cat([ys, token[:, None]], dim=1)
        finished |= token == eos_idx
        if finished.all():
            break
    return ys


DEVICE_MUTANTS: dict[str, list[Mutant]] = {
    "check_greedy_decode": [
        Mutant("start_on_the_cpu", decode_start_on_the_cpu,
               r"raised RuntimeError(.|\n)*Hint: a tensor your code created is on another device than the inputs"),
    ],
}
