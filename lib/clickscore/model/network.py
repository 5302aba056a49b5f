"""SASRec-family sequence model with a next-item head and a purchase-propensity head.

Inputs are the feature contract's left-padded sequences (index 0 = padding):

    item_seq, event_type_seq, category_seq, time_gap_seq, price_seq   (B, L) int
    dense                                                              (B, n_dense) float

Each position's embedding is the sum of its item, event-type, category, time-gap, price-bucket
and position embeddings; a causal Transformer encoder (pre-norm) reads them, so position i sees
only events 0..i. The next-item head scores a state against the item embeddings (tied), over
every item: index 0 (padding) and 1 (out-of-vocabulary) are never recommended. With `repeat`
(on by default), items the user already had at or before the scored position get a learned
bonus: a weight per age (positions back) times a gate read from the state, summed over their
occurrences. Users come back to what they viewed (on the real samples the recently-viewed
baseline beat every other method), and tied embeddings alone learn that slowly from little
data. With `popularity_prior` (on by default) every item's logit carries a fixed offset, the
log of its frequency as a training target (`set_item_prior`, smoothed by one), so an untrained
model already ranks like most-popular and the embeddings learn what the user's history adds to
it; on small data they cannot learn popularity itself faster than counting does. With
`anchored` (on by default) the history's match with the item embeddings is scaled by a learned
factor that starts at 0, so training moves the ranking away from the prior and the bonuses only
as far as it pulls that factor: on the Taobao sample the embeddings otherwise ranked the items
a user had not had below the prior's order; with both on it ties recently-viewed there, and
the repeat bonus no longer costs the generated planted pairs. With
`category_output` (opt-in) an item's output embedding is its own plus its category's
(`set_item_categories`), so what a history says about categories reaches every item of the
category at once. With `category_affinity` (on by default) every item gets a learned bonus in
proportion to its category's share of the history at the scored position (a gate read from
the state scales it): the user's categories, counted rather than left to attention to
summarize, which on small data it does not learn before it overfits. `cutoff_weight` weighs
the loss at each sequence's last position, the first item after the cutoff (what scoring
predicts, usually the first item of a new session), against the positions inside the
history. The propensity head reads the last state (the most recent event) with the
aggregate features.

Training losses: full softmax cross-entropy at the positions that have a target (`target_seq`
above 1; an out-of-vocabulary next item cannot be recommended, so it is not a target), or a
sampled softmax with shared log-uniform negatives and logQ correction for large vocabularies on
CPU; binary cross-entropy for propensity; weighted sum.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from clickscore.model.config import ModelConfig

SEQUENCES = ("item_seq", "event_type_seq", "category_seq", "time_gap_seq", "price_seq")
FIRST_ITEM = 2  # 0 = padding, 1 = out-of-vocabulary


def _ages(history: Tensor, positions: Tensor | None) -> Tensor:
    """Per history slot, how many positions before the scored one it lies (N, L); negative
    after it. `positions` (N,) defaults to the last."""
    length = history.shape[1]
    if positions is None:
        positions = torch.full((history.shape[0],), length - 1, device=history.device)
    return positions.unsqueeze(1) - torch.arange(length, device=history.device)


class SequenceModel(nn.Module):
    item_prior: Tensor  # buffers (V,): the popularity prior, and each item's category index
    item_category: Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hyper.d_model
        self.item = nn.Embedding(cfg.item_vocab_size, d, padding_idx=0)
        self.event_type = nn.Embedding(cfg.n_event_types + 1, d, padding_idx=0)
        self.category = nn.Embedding(cfg.category_vocab_size, d, padding_idx=0)
        self.time_gap = nn.Embedding(cfg.n_time_gap_buckets + 1, d, padding_idx=0)
        self.price = nn.Embedding(cfg.n_price_buckets + 1, d, padding_idx=0)
        self.position = nn.Embedding(cfg.sequence_length, d)
        self.dropout = nn.Dropout(cfg.hyper.dropout)
        layer = nn.TransformerEncoderLayer(d, cfg.hyper.n_heads, 4 * d, cfg.hyper.dropout,
                                           activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.hyper.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.dense_norm = nn.LayerNorm(cfg.n_dense)
        self.propensity = nn.Sequential(nn.Linear(d + cfg.n_dense, d), nn.GELU(),
                                        nn.Dropout(cfg.hyper.dropout), nn.Linear(d, 1))
        # saved with the weights; zeros (no prior) until set_item_prior
        self.register_buffer("item_prior", torch.zeros(cfg.item_vocab_size))
        self.register_buffer("item_category", torch.zeros(cfg.item_vocab_size, dtype=torch.long))
        if cfg.hyper.category_output:  # starts at zero: the model starts from its item embeddings
            self.category_out = nn.Embedding(cfg.category_vocab_size, d)
            nn.init.zeros_(self.category_out.weight)
        nn.init.normal_(self.item.weight, std=d ** -0.5)
        with torch.no_grad():
            self.item.weight[0].zero_()
        if cfg.hyper.category_affinity:  # starts at a bonus of one logit for a whole history
            self.affinity_gate = nn.Linear(d, 1)
            with torch.no_grad():
                self.affinity_gate.weight.zero_()
                self.affinity_gate.bias.fill_(math.log(math.e - 1))  # softplus -> 1
        if cfg.hyper.anchored:
            self.anchor_scale = nn.Parameter(torch.zeros(()))
        if cfg.hyper.repeat:
            self.repeat_age = nn.Embedding(cfg.sequence_length, 1)
            self.repeat_gate = nn.Linear(d, 1)
            with torch.no_grad():  # start at a bonus of about 1 / (1 + age) logits
                self.repeat_age.weight.copy_(
                    1.0 / (1.0 + torch.arange(cfg.sequence_length, dtype=torch.float))
                    .unsqueeze(1))
                self.repeat_gate.weight.zero_()
                self.repeat_gate.bias.fill_(math.log(math.e - 1))  # softplus -> 1

    def set_item_prior(self, counts: Tensor) -> None:
        """The popularity prior from each index's count as a training target (V,): the log
        of its add-one smoothed frequency, centred over the items."""
        if counts.shape != self.item_prior.shape:
            raise ValueError(f"item counts have shape {tuple(counts.shape)}, the vocabulary "
                             f"{tuple(self.item_prior.shape)}")
        log_p = torch.log(counts.double().clamp_min(0) + 1.0)
        centred = log_p - log_p[FIRST_ITEM:].mean()
        centred[:FIRST_ITEM] = 0.0
        with torch.no_grad():
            self.item_prior.copy_(centred.to(self.item_prior.dtype))

    def set_item_categories(self, categories: Tensor) -> None:
        """Each item index's category index (V,), 0 where unknown: with `category_output`
        an item is scored against its own embedding plus its category's."""
        if categories.shape != self.item_category.shape:
            raise ValueError(f"item categories have shape {tuple(categories.shape)}, the "
                             f"vocabulary {tuple(self.item_category.shape)}")
        if int(categories.min()) < 0 or int(categories.max()) >= self.cfg.category_vocab_size:
            raise ValueError(f"category indices must lie in [0, {self.cfg.category_vocab_size})")
        with torch.no_grad():
            self.item_category.copy_(categories.long())

    def output_weights(self, index: Tensor | None = None) -> Tensor:
        """The output embedding of the items at `index` (all items by default): the item's
        (tied with its input embedding), plus an output embedding of its category with
        `category_output`. Items
        of one category share that part, so it learns from every event of the category: on
        small data the item embeddings alone learn slowly which items go together."""
        weights = self.item.weight if index is None else F.embedding(index, self.item.weight)
        if self.cfg.hyper.category_output and hasattr(self, "category_out"):
            categories = self.item_category if index is None else self.item_category[index]
            # F.embedding, not indexing: its backward is deterministic on CPU, while an
            # indexed read's (index_put with accumulate) varied in the last bits between
            # identical seeded runs
            weights = weights + F.embedding(categories, self.category_out.weight)
        return weights

    def _prior(self) -> Tensor | None:
        """The offset per item, or None without the prior (or a model saved before it)."""
        if not self.cfg.hyper.popularity_prior or not hasattr(self, "item_prior"):
            return None
        return self.item_prior

    def parameter_groups(self, learning_rate: float, weight_decay: float
                         ) -> list[dict[str, Any]]:
        """AdamW's groups: the repeat and affinity bonuses' few scalars learn ten times faster
        and without weight decay (like biases: Adam moves a parameter by about the learning
        rate per step, so at the common rate they would barely leave their start in a short
        run)."""
        prefixes = ("repeat_", "affinity_", "anchor_")
        fast = [p for n, p in self.named_parameters() if n.startswith(prefixes)]
        others = [p for n, p in self.named_parameters() if not n.startswith(prefixes)]
        groups: list[dict[str, Any]] = [{"params": others, "lr": learning_rate,
                                         "weight_decay": weight_decay}]
        if fast:
            groups.append({"params": fast, "lr": 10 * learning_rate, "weight_decay": 0.0})
        return groups

    def _attention_mask(self, is_pad: Tensor) -> Tensor:
        """(B * heads, L, L), True where attention is blocked: later positions and padding;
        each position may always see itself, so padded rows never attend to nothing."""
        length = is_pad.shape[1]
        device = is_pad.device
        future = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
        blocked = future.unsqueeze(0) | is_pad.unsqueeze(1)
        blocked &= ~torch.eye(length, dtype=torch.bool, device=device).unsqueeze(0)
        return blocked.repeat_interleave(self.cfg.hyper.n_heads, dim=0)

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        """Hidden states (B, L, d) of every position."""
        items = batch["item_seq"]
        positions = torch.arange(items.shape[1], device=items.device)
        x = (self.item(items) * math.sqrt(self.cfg.hyper.d_model)
             + self.event_type(batch["event_type_seq"]) + self.category(batch["category_seq"])
             + self.time_gap(batch["time_gap_seq"]) + self.price(batch["price_seq"])
             + self.position(positions).unsqueeze(0))
        hidden = self.encoder(self.dropout(x), mask=self._attention_mask(items == 0))
        return self.norm(hidden)

    def item_scores(self, states: Tensor, history: Tensor | None = None,
                    positions: Tensor | None = None, categories: Tensor | None = None
                    ) -> Tensor:
        """Scores of every item for each state (N, V); padding and OOV at -inf. `history`
        (N, L) holds each state's item sequence, `categories` (N, L) its category sequence
        and `positions` (N,) the position the state is at (default: the last), for the
        repeat and affinity bonuses."""
        scores = self._anchored(states @ self.output_weights().T)
        prior = self._prior()
        if prior is not None:
            scores = scores + prior.to(scores.dtype)
        if self.cfg.hyper.repeat and history is not None:
            weights, gate = self._repeat_weights(states, history, positions)
            scores = scores + gate * torch.zeros_like(scores).scatter_add_(
                1, history, weights.to(scores.dtype))
        if self.cfg.hyper.category_affinity and history is not None and categories is not None:
            share, gate = self._category_share(states, history, categories, positions)
            scores = scores + gate * share.to(scores.dtype)[:, self.item_category]
        scores[:, :FIRST_ITEM] = float("-inf")
        return scores

    def _anchored(self, match: Tensor) -> Tensor:
        """The history's match with the item embeddings, scaled by the learned anchor factor
        when the model is anchored."""
        return match * self.anchor_scale.to(match.dtype) if self.cfg.hyper.anchored else match

    def _repeat_weights(self, states: Tensor, history: Tensor, positions: Tensor | None
                        ) -> tuple[Tensor, Tensor]:
        """Per history slot, its weight (N, L): the learned weight of its age where it holds
        an item at or before the state's position, else 0; and the state's gate (N, 1)."""
        length = history.shape[1]
        age = _ages(history, positions)
        seen = (age >= 0) & (history >= FIRST_ITEM)
        weights = self.repeat_age(age.clamp(0, length - 1)).squeeze(-1) * seen
        return weights, F.softplus(self.repeat_gate(states))

    def _category_share(self, states: Tensor, history: Tensor, categories: Tensor,
                        positions: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per state, each category's share of the history's items at or before its position
        (N, C), 0 for padding and unknown categories; and the state's gate (N, 1)."""
        age = _ages(history, positions)
        seen = ((age >= 0) & (history >= FIRST_ITEM) & (categories >= FIRST_ITEM)).float()
        counts = torch.zeros(history.shape[0], self.cfg.category_vocab_size,
                             device=history.device).scatter_add_(1, categories.long(), seen)
        counts[:, :FIRST_ITEM] = 0.0
        share = counts / counts.sum(1, keepdim=True).clamp_min(1.0)
        return share, F.softplus(self.affinity_gate(states))

    def propensity_logit(self, hidden: Tensor, dense: Tensor) -> Tensor:
        features = self.dense_norm(torch.log1p(dense.float().clamp_min(0)))
        return self.propensity(torch.cat([hidden[:, -1], features.to(hidden.dtype)], dim=1)
                               ).squeeze(1)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(next-item scores (B, V) after the last event, purchase propensity (B,) in [0, 1])."""
        hidden = self.encode(batch)
        return (self.item_scores(hidden[:, -1], batch["item_seq"],
                                 categories=batch["category_seq"]),
                torch.sigmoid(self.propensity_logit(hidden, batch["dense"]).float()))

    def losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The training losses: next_item, propensity and their weighted total."""
        hidden = self.encode(batch)
        targets = batch["target_seq"]
        has_target = targets >= FIRST_ITEM
        states, wanted = hidden[has_target], targets[has_target]
        rows, positions = has_target.nonzero(as_tuple=True)
        history, categories = batch["item_seq"][rows], batch["category_seq"][rows]
        # the last position's target is the first item after the cutoff
        weight = torch.where(positions == targets.shape[1] - 1,
                             self.cfg.hyper.cutoff_weight, 1.0)
        if wanted.numel() == 0:
            next_item = hidden.sum() * 0.0
        elif self.cfg.hyper.loss == "full":
            each = F.cross_entropy(self.item_scores(states, history, positions, categories
                                                    ).float(), wanted, reduction="none")
            next_item = (each * weight).sum() / weight.sum()
        else:
            each = self._sampled_softmax(states, wanted, history, positions, categories)
            next_item = (each * weight).sum() / weight.sum()
        label = batch["purchased_within_horizon"].float()
        propensity = F.binary_cross_entropy_with_logits(
            self.propensity_logit(hidden, batch["dense"]).float(), label)
        total = next_item + self.cfg.hyper.propensity_weight * propensity
        return {"next_item": next_item, "propensity": propensity, "total": total}

    def _sampled_softmax(self, states: Tensor, wanted: Tensor, history: Tensor,
                         positions: Tensor, categories: Tensor) -> Tensor:
        """Each target's sampled softmax loss (N,) over shared log-uniform negatives with
        logQ correction. Vocabulary indices run by descending support, so log-uniform over
        them follows popularity."""
        n_items = self.cfg.item_vocab_size - FIRST_ITEM
        u = torch.rand(self.cfg.hyper.negatives, device=states.device)
        ranks = (torch.exp(u * math.log(n_items + 1)) - 1).long().clamp_(0, n_items - 1)
        negatives = ranks + FIRST_ITEM

        def log_q(index: Tensor) -> Tensor:
            rank = (index - FIRST_ITEM).float()
            q = torch.log((rank + 2) / (rank + 1)) / math.log(n_items + 1)
            return torch.log(q * self.cfg.hyper.negatives)

        positive = (self._anchored((states * self.output_weights(wanted)).sum(-1))
                    - log_q(wanted))
        negative = (self._anchored(states @ self.output_weights(negatives).T)
                    - log_q(negatives).unsqueeze(0))
        prior = self._prior()
        if prior is not None:
            positive = positive + prior[wanted]
            negative = negative + prior[negatives].unsqueeze(0)
        if self.cfg.hyper.repeat:  # the bonus of the positive and of each negative, slot by slot
            weights, gate = self._repeat_weights(states, history, positions)
            positive = positive + gate.squeeze(1) * (
                (history == wanted.unsqueeze(1)) * weights).sum(1)
            bonus = torch.zeros_like(negative)
            for slot in range(history.shape[1]):
                bonus += ((history[:, slot, None] == negatives.unsqueeze(0))
                          * weights[:, slot, None])
            negative = negative + gate * bonus
        if self.cfg.hyper.category_affinity:
            share, gate = self._category_share(states, history, categories, positions)
            positive = positive + gate.squeeze(1) * share.gather(
                1, self.item_category[wanted].unsqueeze(1)).squeeze(1)
            negative = negative + gate * share[:, self.item_category[negatives]]
        negative = negative.masked_fill(negatives.unsqueeze(0) == wanted.unsqueeze(1),
                                        float("-inf"))  # accidental hits
        logits = torch.cat([positive.unsqueeze(1), negative], dim=1).float()
        return F.cross_entropy(logits, torch.zeros_like(wanted), reduction="none")
