"""The decoders of notebooks 02 and 03: no attention, Bahdanau's, and Luong's.

Notation of notebook 02 (Bahdanau): s_i the decoder state, y_{i-1} the embedding of the previous
output word, h_j the encoder states, α_ij the weights, c_i the context. Notebook 03 (Luong) writes
h_t for the decoder state, h̄_s for the encoder states and h̃_t for the attentional vector.

A decoder has two entry points: ``forward`` decodes a whole teacher-forced target at once (training),
``start`` + ``step`` decode one word at a time (greedy translation); tests check that both agree.
"""

from __future__ import annotations

import torch
from torch import nn


class PlainDecoder(nn.Module):
    """No attention: the whole source reaches the decoder through one vector c (Cho et al., 2014).

    s_0 = tanh(W_0 c);  s_i = GRU([y_{i-1}; c], s_{i-1});  p(y_i) = softmax(W_o [s_i; c; y_{i-1}])
    """

    uses_attention = False

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, encoder_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.init_state = nn.Linear(encoder_dim, hidden_dim)  # W_0
        self.rnn = nn.GRU(embed_dim + encoder_dim, hidden_dim, batch_first=True)
        self.output = nn.Linear(hidden_dim + encoder_dim + embed_dim, vocab_size)  # W_o

    def start(self, encoder_states, summary, source_mask) -> dict:
        return {"state": torch.tanh(self.init_state(summary)), "summary": summary}  # s_0

    def forward(self, target_input, encoder_states, summary, source_mask):
        """Teacher forcing over all steps at once: logits (B, T, V), no weights."""
        embedded = self.embedding(target_input)  # y_{i-1} for every i
        context = summary[:, None, :].expand(-1, target_input.shape[1], -1)  # the same c every step
        state0 = torch.tanh(self.init_state(summary))  # s_0 = tanh(W_0 c)
        states, _ = self.rnn(torch.cat([embedded, context], dim=-1), state0[None])  # s_1 … s_T
        return self.output(torch.cat([states, context, embedded], dim=-1)), None

    def step(self, previous_token, memory: dict):
        embedded = self.embedding(previous_token)  # y_{i-1}: (B, E)
        summary = memory["summary"]
        # s_i = GRU([y_{i-1}; c], s_{i-1})
        _, state = self.rnn(
            torch.cat([embedded, summary], dim=-1)[:, None, :], memory["state"][None]
        )
        memory["state"] = state[0]
        logits = self.output(
            torch.cat([state[0], summary, embedded], dim=-1)
        )  # W_o [s_i; c; y_{i-1}]
        return logits, None


def bahdanau_step(
    previous_state: torch.Tensor,
    previous_embedding: torch.Tensor,
    encoder_states: torch.Tensor,
    source_mask: torch.Tensor,
    attention: nn.Module,
    cell: nn.GRUCell,
    prepared: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Bahdanau decoder step (exercise 2.3 of notebook 02): returns (s_i, c_i, α_i).

    s_{i-1} (B, H), y_{i-1} (B, E), encoder states h (B, m, K), source mask (B, m) with True = a real
    word. ``attention(query, keys, values, mask)`` returns (context, weights); ``prepared`` is its
    per-sentence part U h_j, computed once by ``attention.prepare`` (None: computed here).
    """
    # e_ij = vᵀ tanh(W s_{i-1} + U h_j);  α_ij = softmax_j(e_ij), 0 on padding;  c_i = Σ_j α_ij h_j
    context, weights = attention(
        previous_state, encoder_states, encoder_states, source_mask, prepared=prepared
    )
    # s_i = GRU([y_{i-1}; c_i], s_{i-1})
    state = cell(torch.cat([previous_embedding, context], dim=-1), previous_state)
    return state, context, weights


class AttentionDecoder(nn.Module):
    """A GRU decoder that reads the source through a pluggable alignment model.

    ``style="bahdanau"`` (Bahdanau et al., 2015) — score with the *previous* state:
        c_i = Σ_j α_ij h_j with α_i = attention(s_{i-1}, h);  s_i = GRU([y_{i-1}; c_i], s_{i-1})
        p(y_i) = softmax(W_o [s_i; c_i; y_{i-1}])
    ``style="luong"`` (Luong et al., 2015) — score with the *current* state:
        h_t = GRU([y_{t-1}; h̃_{t-1} if input feeding], h_{t-1});  c_t = attention(h_t, h̄)
        h̃_t = tanh(W_c [c_t; h_t]);  p(y_t) = softmax(W_s h̃_t)
    Without input feeding Luong's decoder runs the GRU over all target steps at once in training
    and attends for all steps in one batched call; Bahdanau's must loop step by step.
    """

    uses_attention = True

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_dim: int,
        encoder_dim: int,
        attention: nn.Module,
        style: str = "bahdanau",
        input_feeding: bool = False,
    ):
        super().__init__()
        if style not in ("bahdanau", "luong"):
            raise ValueError(f"style must be 'bahdanau' or 'luong', got {style!r}")
        if input_feeding and style != "luong":
            raise ValueError("input feeding belongs to Luong's decoder: use style='luong'")
        self.style, self.input_feeding, self.hidden_dim = style, input_feeding, hidden_dim
        # The order in which the layers are made fixes their random initial weights: keep it.
        self.attention = attention
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.init_state = nn.Linear(encoder_dim, hidden_dim)  # s_0 = tanh(W_0 c)
        if style == "bahdanau":
            self.cell = nn.GRUCell(embed_dim + encoder_dim, hidden_dim)  # GRU([y_{i-1}; c_i], ·)
            self.output = nn.Linear(hidden_dim + encoder_dim + embed_dim, vocab_size)  # W_o
        else:
            rnn_input = embed_dim + (hidden_dim if input_feeding else 0)
            self.rnn = nn.GRU(rnn_input, hidden_dim, batch_first=True)
            self.combine = nn.Linear(encoder_dim + hidden_dim, hidden_dim, bias=False)  # W_c
            self.output = nn.Linear(hidden_dim, vocab_size)  # W_s

    def start(self, encoder_states, summary, source_mask) -> dict:
        """The decoder's memory before the first word: s_0, the keys, their prepared part, the mask."""
        memory = {
            "state": torch.tanh(self.init_state(summary)),  # s_0 = tanh(W_0 c)
            "keys": encoder_states,
            "prepared": self.attention.prepare(encoder_states),  # e.g. U h_j, once per sentence
            "mask": source_mask,
        }
        if self.input_feeding:
            memory["attentional"] = encoder_states.new_zeros(
                encoder_states.shape[0], self.hidden_dim
            )  # h̃_0 = 0
        return memory

    # ---- one word at a time (greedy translation) -------------------------------------------------

    def step(self, previous_token, memory: dict):
        """One decoding step: logits (B, V) and alignment weights (B, S); updates ``memory``."""
        embedded = self.embedding(previous_token)  # y_{i-1}
        if self.style == "bahdanau":
            return self._bahdanau_step(embedded, memory)
        return self._luong_step(embedded, memory)

    def _bahdanau_step(self, embedded, memory: dict):
        state, context, weights = bahdanau_step(
            memory["state"],  # s_{i-1}
            embedded,
            memory["keys"],
            memory["mask"],
            self.attention,
            self.cell,
            prepared=memory["prepared"],
        )
        memory["state"] = state
        return self._bahdanau_logits(state, context, embedded), weights

    def _bahdanau_logits(self, state, context, embedded):
        return self.output(torch.cat([state, context, embedded], dim=-1))  # W_o [s_i; c_i; y_{i-1}]

    def _luong_step(self, embedded, memory: dict):
        rnn_input = embedded
        if self.input_feeding:
            rnn_input = torch.cat([embedded, memory["attentional"]], dim=-1)  # [y_{t-1}; h̃_{t-1}]
        _, state = self.rnn(rnn_input[:, None, :], memory["state"][None])  # h_t = GRU(·, h_{t-1})
        state = state[0]
        memory["state"] = state
        attentional, weights = self._luong_attend(
            state, memory["keys"], memory["mask"], memory["prepared"]
        )
        if self.input_feeding:
            memory["attentional"] = attentional
        return self.output(attentional), weights  # p(y_t) = softmax(W_s h̃_t)

    def _luong_attend(self, state, encoder_states, source_mask, prepared=None):
        """h̃_t and a_t from h_t (B, H) or all h_t at once (B, T, H)."""
        # a_t(s) = softmax_s(score(h_t, h̄_s));  c_t = Σ_s a_t(s) h̄_s
        context, weights = self.attention(
            state, encoder_states, encoder_states, source_mask, prepared=prepared
        )
        attentional = torch.tanh(self.combine(torch.cat([context, state], dim=-1)))  # h̃_t
        return attentional, weights

    # ---- a whole teacher-forced target at once (training) ----------------------------------------

    def forward(self, target_input, encoder_states, summary, source_mask):
        """Teacher forcing: logits (B, T, V) and alignment weights (B, T, S)."""
        if self.style == "bahdanau":
            return self._bahdanau_forward(target_input, encoder_states, summary, source_mask)
        if not self.input_feeding:
            return self._luong_forward(target_input, summary, encoder_states, source_mask)
        memory = self.start(encoder_states, summary, source_mask)  # input feeding: a loop
        logits, all_weights = [], []
        for position in range(target_input.shape[1]):
            step_logits, weights = self.step(target_input[:, position], memory)
            logits.append(step_logits)
            all_weights.append(weights)
        return torch.stack(logits, 1), torch.stack(all_weights, 1)

    def _bahdanau_forward(self, target_input, encoder_states, summary, source_mask):
        # Only the recurrence is sequential: the output layer runs once over all steps.
        memory = self.start(encoder_states, summary, source_mask)
        embedded = self.embedding(target_input)  # y_{i-1} for every i
        states, contexts, all_weights = [], [], []
        state = memory["state"]  # s_0
        for position in range(target_input.shape[1]):
            state, context, weights = bahdanau_step(
                state,
                embedded[:, position],
                encoder_states,
                source_mask,
                self.attention,
                self.cell,
                prepared=memory["prepared"],
            )
            states.append(state)
            contexts.append(context)
            all_weights.append(weights)
        states, contexts = torch.stack(states, 1), torch.stack(contexts, 1)
        return self._bahdanau_logits(states, contexts, embedded), torch.stack(all_weights, 1)

    def _luong_forward(self, target_input, summary, encoder_states, source_mask):
        # h_t does not depend on the attention: one GRU pass gives every query h_1 … h_T.
        embedded = self.embedding(target_input)
        state0 = torch.tanh(self.init_state(summary))  # h_0
        states, _ = self.rnn(embedded, state0[None])  # h_t for every t at once
        attentional, weights = self._luong_attend(states, encoder_states, source_mask)
        return self.output(attentional), weights
