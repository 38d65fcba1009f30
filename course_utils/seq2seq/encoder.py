"""The bidirectional GRU encoder shared by every model of notebooks 02 and 03."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class Encoder(nn.Module):
    """Bidirectional GRU: h_j = [→h_j; ←h_j] (B, S, 2·hidden) and a summary for the decoder."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.rnn = nn.GRU(embed_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.output_dim = 2 * hidden_dim

    def forward(self, source: torch.Tensor, lengths: torch.Tensor):
        """Returns encoder states (B, S, 2H) (zeros at padding) and the summary c = [→h_S; ←h_1] (B, 2H)."""
        # Packing skips the padding: a sentence's states do not depend on the longest in its batch.
        packed = pack_padded_sequence(
            self.embedding(source), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        states, final = self.rnn(packed)  # final: (2, B, H), the last state of each direction
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=source.shape[1])
        summary = torch.cat([final[0], final[1]], dim=-1)  # c = [→h_S; ←h_1]
        return states, summary
