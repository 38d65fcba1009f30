"""How many bytes a decoder caches per token: multi-head, multi-query, grouped-query, latent.

Every generated token leaves, in every layer, what later tokens will attend to (notebook 08):

    MHA   2 · layers · H · d_h · bytes          a key and a value of d_h features per head
    GQA   2 · layers · G · d_h · bytes          G key/value heads shared by the H query heads
    MQA   2 · layers · 1 · d_h · bytes          GQA with G = 1 (Shazeer, 2019)
    MLA   layers · (d_c + d_h^R) · bytes        one latent of d_c features and one RoPE key of
                                                d_h^R features, shared by every head (DeepSeek-V2)

The query heads H do not appear in the GQA line: they are not cached. :data:`PUBLISHED` holds the
configurations of a few released models, each with where its numbers come from.
"""

from __future__ import annotations

from dataclasses import dataclass

from course_utils.helpers.validation import require_divides, require_positive_int


def _require_positive_ints(**values: int) -> None:
    for name, value in values.items():
        require_positive_int(name, value)


def kv_bytes_per_token(
    layers: int, num_heads: int, num_kv_heads: int, head_dim: int, bytes_per_element: int = 2
) -> int:
    """2 · layers · G · d_h · bytes: one key and one value per key/value head, in every layer.

    ``num_heads`` (H query heads) is checked to be a multiple of ``num_kv_heads`` (G) and is
    otherwise unused: query heads are not cached. G = H is multi-head, G = 1 multi-query attention.
    """
    _require_positive_ints(
        layers=layers, num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
        bytes_per_element=bytes_per_element,
    )  # fmt: skip
    require_divides("num_kv_heads", num_kv_heads, "num_heads", num_heads)
    return 2 * layers * num_kv_heads * head_dim * bytes_per_element  # keys and values


def latent_bytes_per_token(
    layers: int, latent_dim: int, rope_dim: int, bytes_per_element: int = 2
) -> int:
    """layers · (d_c + d_h^R) · bytes: multi-head latent attention caches one latent and one
    RoPE key per token and layer, whatever the number of heads."""
    _require_positive_ints(
        layers=layers, latent_dim=latent_dim, rope_dim=rope_dim, bytes_per_element=bytes_per_element
    )
    return layers * (latent_dim + rope_dim) * bytes_per_element  # c_t and k_t^R


@dataclass(frozen=True)
class PublishedConfig:
    """A released model's attention, as its configuration file states it."""

    name: str
    kind: str  # "MHA", "GQA", "MQA" or "MLA"
    layers: int
    num_heads: int
    num_kv_heads: int  # G; for MLA the number of heads (its keys are rebuilt per head)
    head_dim: int
    latent_dim: int = 0  # d_c (MLA only)
    rope_dim: int = 0  # d_h^R (MLA only)
    source: str = ""

    def bytes_per_token(self, bytes_per_element: int = 2) -> int:
        if self.kind == "MLA":
            return latent_bytes_per_token(
                self.layers, self.latent_dim, self.rope_dim, bytes_per_element
            )
        return kv_bytes_per_token(
            self.layers, self.num_heads, self.num_kv_heads, self.head_dim, bytes_per_element
        )


PUBLISHED = (
    PublishedConfig(
        "Llama-2-7B", "MHA", layers=32, num_heads=32, num_kv_heads=32, head_dim=128,
        source="Touvron et al. 2023 (Llama 2), Table 1; meta-llama/Llama-2-7b-hf config.json: "
        "hidden_size 4096, num_attention_heads 32, num_hidden_layers 32",
    ),
    PublishedConfig(
        "Llama-2-70B", "GQA", layers=80, num_heads=64, num_kv_heads=8, head_dim=128,
        source="Touvron et al. 2023 (Llama 2), §2.2 (GQA for 34B and 70B); meta-llama/Llama-2-70b-hf "
        "config.json: hidden_size 8192, num_attention_heads 64, num_key_value_heads 8, 80 layers",
    ),
    PublishedConfig(
        "Falcon-7B", "MQA", layers=32, num_heads=71, num_kv_heads=1, head_dim=64,
        source="Almazrouei et al. 2023 (The Falcon Series); tiiuae/falcon-7b config.json: "
        "hidden_size 4544, n_head 71, n_layer 32, multi_query true",
    ),
    PublishedConfig(
        "DeepSeek-V2", "MLA", layers=60, num_heads=128, num_kv_heads=128, head_dim=128,
        latent_dim=512, rope_dim=64,
        source="DeepSeek-AI 2024 (DeepSeek-V2), §2.1 and §3.1.2: d_c = 4·d_h = 512, "
        "d_h^R = d_h/2 = 64, 60 layers, 128 heads; deepseek-ai/DeepSeek-V2 config.json: "
        "kv_lora_rank 512, qk_rope_head_dim 64, num_hidden_layers 60",
    ),
)  # fmt: skip


__all__ = ["PUBLISHED", "PublishedConfig", "kv_bytes_per_token", "latent_bytes_per_token"]
