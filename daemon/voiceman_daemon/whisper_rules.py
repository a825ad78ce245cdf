"""CTranslate2's Whisper decoding rules for the torch backend (asr_transformers): suppressed
tokens, blank suppression at the start, Whisper's timestamp rules with the first timestamp at
most 1 s, as one logits processor that renormalises as CTranslate2 does."""

from __future__ import annotations

import math
from typing import Any

MAX_INITIAL_TIMESTAMP_INDEX = 50  # the first timestamp is at most 1.0 s (CTranslate2's default)


class DecodingRules:
    """CTranslate2's Whisper decoding rules as one vectorised logits processor (works on any
    number of rows: batch x beams), returning renormalised log-probabilities.

    It also keeps, per step, each running prefix's cumulative log-probability, so the final
    hypotheses' scores (CTranslate2's ``avg_logprob``) come out without storing per-step
    score tensors."""

    def __init__(
        self,
        *,
        vocab_size: int,
        sample_begin: int,
        eot: int,
        no_timestamps: int,
        timestamp_begin: int,
        suppress: list[int],
        suppress_begin: list[int],
        device,
        rows_per_item: int = 1,
    ):
        import torch

        self.rows_per_item = rows_per_item  # beams: rows of one batch item are consecutive
        self.sample_begin, self.eot, self.ts_begin = sample_begin, eot, timestamp_begin
        self.always = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        self.always[[t for t in suppress if 0 <= t < vocab_size]] = True
        self.always[no_timestamps] = True
        self.at_begin = self.always.clone()
        self.at_begin[[t for t in suppress_begin if 0 <= t < vocab_size]] = True
        self.at_begin[:timestamp_begin] = True  # the first token is a timestamp ...
        self.at_begin[timestamp_begin + MAX_INITIAL_TIMESTAMP_INDEX + 1 :] = True  # ... at most 1 s in
        self.positions = torch.arange(vocab_size, device=device)
        self.history: list[tuple[Any, Any, Any]] = []  # per step: (prefixes, cumulative logprob, logprob of eot)
        self._last: tuple[Any, Any] | None = None  # (prefixes, logprobs) of the latest step

    def __call__(self, input_ids, scores):
        import torch

        step = input_ids.shape[1]
        scores = scores.float()
        if step == self.sample_begin:
            mask = self.at_begin.expand_as(scores)
            scores = scores.masked_fill(mask, -math.inf)
        else:
            generated = input_ids[:, self.sample_begin :]
            is_ts = generated >= self.ts_begin
            last = is_ts[:, -1]
            penultimate = is_ts[:, -2] if generated.shape[1] >= 2 else last
            pair = last & penultimate  # has to be text next
            opened = last & ~penultimate  # has to be a timestamp (or the end) next
            mask = self.always.expand_as(scores).clone()
            mask |= pair[:, None] & (self.positions >= self.ts_begin)
            mask |= opened[:, None] & (self.positions < self.eot)
            # timestamps do not decrease: forbid those below the last one
            last_ts = torch.where(is_ts, generated, torch.full_like(generated, -1)).max(dim=1).values
            mask |= (last_ts >= 0)[:, None] & (self.positions >= self.ts_begin) & (self.positions < last_ts[:, None])
            scores = scores.masked_fill(mask, -math.inf)
            # when the timestamps together are likelier than any text token, take a timestamp
            logprobs = torch.log_softmax(scores, dim=-1)
            ts_mass = torch.logsumexp(logprobs[:, self.ts_begin :], dim=-1)
            best_text = logprobs[:, : self.ts_begin].max(dim=-1).values
            force = ~pair & (ts_mass > best_text)
            scores = scores.masked_fill(force[:, None] & (self.positions < self.ts_begin), -math.inf)
        logprobs = torch.log_softmax(scores, dim=-1)
        self._track(input_ids, logprobs)
        return logprobs

    def _track(self, input_ids, logprobs) -> None:
        import torch

        if self._last is None:
            cumulative = torch.zeros(input_ids.shape[0], device=logprobs.device)
        else:
            prev_ids, prev_logprobs, prev_cum = self._last
            same = (input_ids[:, None, :-1] == prev_ids[None, :, :]).all(dim=-1)  # row -> its parent row ...
            item = torch.arange(input_ids.shape[0], device=input_ids.device) // self.rows_per_item
            same &= item[:, None] == item[None, :]  # ... within its own batch item
            parent = same.float().argmax(dim=1)
            cumulative = prev_cum[parent] + prev_logprobs[parent, input_ids[:, -1]]
        self._last = (input_ids, logprobs, cumulative)
        self.history.append((input_ids, cumulative, logprobs[:, self.eot]))

    def _row(self, ids, prefix, item: int) -> int | None:
        first = item * self.rows_per_item
        rows = (ids[first : first + self.rows_per_item] == prefix[None, :]).all(dim=1).nonzero()
        return first + int(rows[0]) if rows.numel() else None

    def sequence_logprob(self, sequence, item: int) -> float | None:
        """Cumulative log-probability of batch item ``item``'s finished hypothesis
        (prompt + tokens [+ eot])."""
        prefix = sequence[:-1]
        if int(sequence[-1]) == self.eot:
            for ids, cumulative, eot_logprob in self.history:
                if ids.shape[1] == prefix.shape[0]:
                    row = self._row(ids, prefix, item)
                    if row is not None:
                        return float(cumulative[row] + eot_logprob[row])
        if self._last is not None:  # stopped at the length limit: its last token came from the last step
            ids, logprobs, cumulative = self._last
            if ids.shape[1] == prefix.shape[0]:
                row = self._row(ids, prefix, item)
                if row is not None:
                    return float(cumulative[row] + logprobs[row, int(sequence[-1])])
        return None
