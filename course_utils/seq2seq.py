"""A toy English→French translation task and the small RNN encoder–decoders of notebooks 02 and 03.

The grammar
-----------
``generate_pair`` writes one English sentence and its French translation from a small grammar
whose translations need the reorderings that made attention necessary:

* adjective–noun order:  "the small black cat" → "le petit chat noir"
* gender agreement:      "a black car" → "une voiture noire"  (article and adjective follow the noun)
* negation around verb:  "she does not see the dog" → "elle ne voit pas le chien"
* object pronouns:       "i love you" → "je t' aime"; "he does not see her" → "il ne la voit pas"
* adverbs after verb:    "we often look at the cat" → "nous regardons souvent le chat"
* many-to-one words:     "listen to" → "écoute", and elision "je" → "j'" before a vowel
* coordination:          up to three clauses joined by "and" → "et" (3 to 25 source tokens)

Tokens are lower-case words; French clitics such as ``t'`` are tokens of their own
(``detokenize`` glues them back: "je t'aime").

The models
----------
``Encoder`` is a bidirectional GRU. ``PlainDecoder`` sees the source only through the encoder's
final state (the *bottleneck*). ``AttentionDecoder`` takes a pluggable alignment model from
``course_utils.alignment`` and runs in Bahdanau's order (score with s_{i-1}, then update the state)
or Luong's (update the state, then score with h_t; optionally with input feeding).

``train`` is teacher-forced with Adam, gradient clipping and a tqdm bar; ``Seq2Seq.translate``
decodes greedily and returns the alignment weights; ``evaluate`` gives exact-match accuracy broken
down by source length.

Command line (reproduces a longer run than the notebooks can afford)::

    python -m course_utils.seq2seq --model bahdanau --steps 3000 --out bahdanau.pt
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from course_utils.alignment import AdditiveAttention, LuongAttention
from course_utils.masks import padding_mask

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
MIN_SOURCE_LEN, MAX_SOURCE_LEN = 3, 25

# ==================================================================================================
# The grammar
# ==================================================================================================

# person → (English subject, French subject, English object, French object pronoun)
_PERSONS = {
    "1s": ("i", "je", "me", "me"),
    "2s": ("you", "tu", "you", "te"),
    "3s_m": ("he", "il", "him", "le"),
    "3s_f": ("she", "elle", "her", "la"),
    "1p": ("we", "nous", "us", "nous"),
    "3p": ("they", "ils", "them", "les"),
}
_CONJUGATION_SLOT = {"1s": 0, "2s": 1, "3s_m": 2, "3s_f": 2, "3s": 2, "1p": 3, "3p": 4}
# Subject and object pronoun that would make a reflexive ("i see me"): not generated.
_SAME_PERSON = {("1s", "1s"), ("1s", "1p"), ("1p", "1p"), ("1p", "1s"), ("2s", "2s")}

# (English base, English 3rd singular, French je/tu/il/nous/ils); a vowel-initial French verb elides.
_VERBS = (
    (("see",), ("sees",), ("vois", "vois", "voit", "voyons", "voient")),
    (("love",), ("loves",), ("aime", "aimes", "aime", "aimons", "aiment")),
    (("look", "at"), ("looks", "at"), ("regarde", "regardes", "regarde", "regardons", "regardent")),
    (("listen", "to"), ("listens", "to"), ("écoute", "écoutes", "écoute", "écoutons", "écoutent")),
    (("find",), ("finds",), ("trouve", "trouves", "trouve", "trouvons", "trouvent")),
    (("hear",), ("hears",), ("entends", "entends", "entend", "entendons", "entendent")),
    (("call",), ("calls",), ("appelle", "appelles", "appelle", "appelons", "appellent")),
    (("follow",), ("follows",), ("suis", "suis", "suit", "suivons", "suivent")),
    (("know",), ("knows",), ("connais", "connais", "connaît", "connaissons", "connaissent")),
    (("help",), ("helps",), ("aide", "aides", "aide", "aidons", "aident")),
    (("draw",), ("draws",), ("dessine", "dessines", "dessine", "dessinons", "dessinent")),
)
_NOUNS = (  # (English, French, gender)
    ("cat", "chat", "m"),
    ("dog", "chien", "m"),
    ("horse", "cheval", "m"),
    ("book", "livre", "m"),
    ("boy", "garçon", "m"),
    ("cake", "gâteau", "m"),
    ("bike", "vélo", "m"),
    ("car", "voiture", "f"),
    ("house", "maison", "f"),
    ("girl", "fille", "f"),
    ("mouse", "souris", "f"),
    ("flower", "fleur", "f"),
    ("table", "table", "f"),
    ("chair", "chaise", "f"),
    ("ball", "balle", "f"),
    ("cow", "vache", "f"),
)
_DETERMINERS = (
    ("the", "le", "la"),
    ("a", "un", "une"),
    ("my", "mon", "ma"),
    ("this", "ce", "cette"),
)
_ADJECTIVES_BEFORE = (  # stay before the noun in French
    ("small", "petit", "petite"),
    ("big", "gros", "grosse"),
    ("old", "vieux", "vieille"),
    ("pretty", "joli", "jolie"),
)
_ADJECTIVES_AFTER = (  # colours move after the noun in French
    ("black", "noir", "noire"),
    ("white", "blanc", "blanche"),
    ("red", "rouge", "rouge"),
    ("green", "vert", "verte"),
    ("blue", "bleu", "bleue"),
    ("grey", "gris", "grise"),
)
_ADVERBS = (
    ("often", "souvent"),
    ("always", "toujours"),
)  # before the verb in English, after in French
_PREPOSITIONS = (
    ("in", "dans"),
    ("with", "avec"),
    ("under", "sous"),
    ("behind", "derrière"),
    ("on", "sur"),
)
_TIMES = (
    (("today",), ("aujourd'hui",)),
    (("now",), ("maintenant",)),
    (("tonight",), ("ce", "soir")),
    (("every", "day"), ("chaque", "jour")),
)
_VOWELS = tuple("aeiouéèêhâ")


def _elide(word: str) -> str:
    """je/me/te/le/la/ne → j'/m'/t'/l'/l'/n' (used before a vowel)."""
    return {"je": "j'", "me": "m'", "te": "t'", "le": "l'", "la": "l'", "ne": "n'"}.get(word, word)


@dataclass
class AlignedPair:
    """One sentence pair with its dictionary ("textbook") word alignment.

    ``links[k]`` are the English positions French token k translates; ``kinds[k]`` names its role
    (noun, adjective, determiner, verb, subject pronoun, object pronoun, negation, adverb,
    preposition, time, conjunction). "ne … pas" both link to "do/does not"; "regarde" links to "look at".
    """

    english: list[str]
    french: list[str]
    links: list[tuple[int, ...]]
    kinds: list[str]

    def append(self, other: AlignedPair) -> None:
        offset = len(self.english)
        self.english += other.english
        self.french += other.french
        self.links += [tuple(offset + position for position in link) for link in other.links]
        self.kinds += other.kinds


def _noun_phrase(rng: random.Random) -> AlignedPair:
    """det [adj-before] [colour] noun → dét [adj-before] nom [couleur], agreeing in gender."""
    english_noun, french_noun, gender = rng.choice(_NOUNS)
    feminine = gender == "f"
    english_det, french_masc, french_fem = rng.choice(_DETERMINERS)
    english = [english_det]
    french, links, kinds = [french_fem if feminine else french_masc], [(0,)], ["determiner"]
    if rng.random() < 0.35:
        adjective = rng.choice(_ADJECTIVES_BEFORE)
        english.append(adjective[0])
        french.append(adjective[2 if feminine else 1])
        links.append((len(english) - 1,))
        kinds.append("adjective")
    colour = rng.choice(_ADJECTIVES_AFTER) if rng.random() < 0.5 else None
    if colour:
        english.append(colour[0])
    english.append(english_noun)
    french.append(french_noun)  # the noun comes before its colour in French
    links.append((len(english) - 1,))
    kinds.append("noun")
    if english[0] == "a" and english[1].startswith(tuple("aeiou")):
        english[0] = "an"  # "an old cat"
    if colour:
        french.append(colour[2 if feminine else 1])
        links.append((len(english) - 2,))
        kinds.append("adjective")
    return AlignedPair(english, french, links, kinds)


def _clause(rng: random.Random) -> AlignedPair:
    """Subject [not] [adverb] verb object [prepositional phrase] [time]."""
    if rng.random() < 0.6:
        person = rng.choice(list(_PERSONS))
        subject = AlignedPair(
            [_PERSONS[person][0]], [_PERSONS[person][1]], [(0,)], ["subject pronoun"]
        )
    else:
        person = "3s"
        subject = _noun_phrase(rng)
    base, third, forms = rng.choice(_VERBS)
    french_verb = forms[_CONJUGATION_SLOT[person]]
    negated = rng.random() < 0.35
    adverb = rng.choice(_ADVERBS) if rng.random() < 0.25 else None

    pronoun_person = None
    if rng.random() < 0.4:
        candidates = [p for p in _PERSONS if (person, p) not in _SAME_PERSON]
        pronoun_person = rng.choice(candidates)
        noun_object = None
    else:
        noun_object = _noun_phrase(rng)

    # English: subject [do/does not] [adverb] verb object
    english = list(subject.english)
    negation_positions: tuple[int, ...] = ()
    if negated:
        english += ["does" if person.startswith("3s") else "do", "not"]
        negation_positions = (len(english) - 2, len(english) - 1)
    adverb_position = None
    if adverb:
        english.append(adverb[0])
        adverb_position = len(english) - 1
    verb_words = base if negated or not person.startswith("3s") else third
    verb_positions = tuple(range(len(english), len(english) + len(verb_words)))
    english += list(verb_words)
    object_start = len(english)
    english += [_PERSONS[pronoun_person][2]] if pronoun_person else noun_object.english

    # French: sujet [ne] [pronom] verbe [pas] [adverbe] [objet]; elision before a vowel
    verb_block = [(french_verb, verb_positions, "verb")]
    if pronoun_person:
        verb_block.insert(0, (_PERSONS[pronoun_person][3], (object_start,), "object pronoun"))
    if negated:
        verb_block.insert(0, ("ne", negation_positions, "negation"))
    for index in range(len(verb_block) - 1):
        if verb_block[index + 1][0].startswith(_VOWELS):
            verb_block[index] = (_elide(verb_block[index][0]), *verb_block[index][1:])
    if subject.french == ["je"] and verb_block[0][0].startswith(_VOWELS):
        subject.french = ["j'"]
    clause = AlignedPair(english, list(subject.french), list(subject.links), list(subject.kinds))
    for word, link, kind in verb_block:
        clause.french.append(word)
        clause.links.append(link)
        clause.kinds.append(kind)
    if negated:
        clause.french.append("pas")
        clause.links.append(negation_positions)
        clause.kinds.append("negation")
    if adverb:
        clause.french.append(adverb[1])
        clause.links.append((adverb_position,))
        clause.kinds.append("adverb")
    if noun_object:
        clause.french += noun_object.french
        clause.links += [tuple(object_start + p for p in link) for link in noun_object.links]
        clause.kinds += noun_object.kinds

    if rng.random() < 0.3:
        preposition = rng.choice(_PREPOSITIONS)
        clause.append(AlignedPair([preposition[0]], [preposition[1]], [(0,)], ["preposition"]))
        clause.append(_noun_phrase(rng))
    if rng.random() < 0.2:
        english_time, french_time = rng.choice(_TIMES)
        if len(english_time) == len(french_time):  # "every day" → "chaque jour", word by word
            time_links = [(position,) for position in range(len(english_time))]
        else:  # "tonight" → "ce soir"
            time_links = [tuple(range(len(english_time)))] * len(french_time)
        clause.append(
            AlignedPair(
                list(english_time), list(french_time), time_links, ["time"] * len(french_time)
            )
        )
    return clause


def generate_aligned_pair(rng: random.Random, clauses: int | None = None) -> AlignedPair:
    """One pair of 1 to 3 clauses joined by "and" / "et", with its dictionary alignment."""
    if clauses is None:
        clauses = rng.choices((1, 2, 3), weights=(0.4, 0.4, 0.2))[0]
    pair = _clause(rng)
    for _ in range(clauses - 1):
        next_clause = _clause(rng)
        pair.append(AlignedPair(["and"], ["et"], [(0,)], ["conjunction"]))
        pair.append(next_clause)
    return pair


def generate_pair(rng: random.Random, clauses: int | None = None) -> tuple[list[str], list[str]]:
    """One (English tokens, French tokens) pair of 1 to 3 clauses joined by "and" / "et"."""
    pair = generate_aligned_pair(rng, clauses)
    return pair.english, pair.french


def lexicon() -> tuple[list[str], list[str]]:
    """Every English and every French word the grammar can produce (sorted, deterministic)."""
    english, french = {"an", "and", "do", "does", "not"}, {"et", "ne", "n'", "pas", "j'"}
    for english_subject, french_subject, english_object, french_object in _PERSONS.values():
        english |= {english_subject, english_object}
        french |= {french_subject, french_object, _elide(french_object)}
    for base, third, forms in _VERBS:
        english |= set(base) | set(third)
        french |= set(forms)
    for english_noun, french_noun, _ in _NOUNS:
        english.add(english_noun)
        french.add(french_noun)
    for table in (_DETERMINERS, _ADJECTIVES_BEFORE, _ADJECTIVES_AFTER):
        for english_word, *french_words in table:
            english.add(english_word)
            french |= set(french_words)
    for english_word, french_word in _ADVERBS + _PREPOSITIONS:
        english.add(english_word)
        french.add(french_word)
    for english_words, french_words in _TIMES:
        english |= set(english_words)
        french |= set(french_words)
    return sorted(english), sorted(french)


def detokenize(tokens: Iterable[str]) -> str:
    """Join French tokens, gluing elided clitics to the next word: ["je", "t'", "aime"] → "je t'aime"."""
    text = ""
    for token in tokens:
        text += token if text.endswith("'") or not text else " " + token
    return text


# ==================================================================================================
# Vocabularies, the data set and padded batches
# ==================================================================================================


class Vocab:
    """Token ↔ index, with <pad>=0, <bos>=1, <eos>=2."""

    def __init__(self, tokens: Iterable[str]):
        self.itos = [PAD, BOS, EOS] + [token for token in tokens if token not in (PAD, BOS, EOS)]
        self.stoi = {token: index for index, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be distinct")

    def __len__(self) -> int:
        return len(self.itos)

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        return [token for token in tokens if token not in self.stoi]

    def encode(self, tokens: Sequence[str]) -> list[int]:
        missing = self.unknown(tokens)
        if missing:
            raise KeyError(f"unknown tokens {sorted(set(missing))}")
        return [self.stoi[token] for token in tokens]

    def decode(self, indices: Iterable[int]) -> list[str]:
        """Tokens up to (not including) the first <eos>; <pad> and <bos> are skipped."""
        tokens = []
        for index in indices:
            token = self.itos[int(index)]
            if token == EOS:
                break
            if token not in (PAD, BOS):
                tokens.append(token)
        return tokens


@dataclass(frozen=True)
class TranslationData:
    """Deterministic train / held-out split of distinct sentence pairs, with both vocabularies."""

    train: list[tuple[tuple[str, ...], tuple[str, ...]]]
    held_out: list[tuple[tuple[str, ...], tuple[str, ...]]]
    source_vocab: Vocab
    target_vocab: Vocab
    seed: int = 0
    # source tokens → (links, kinds) of its dictionary alignment (see AlignedPair)
    gold: dict = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        lengths = [len(source) for source, _ in self.train + self.held_out]
        return (
            f"{len(self.train)} training and {len(self.held_out)} held-out sentence pairs, "
            f"source lengths {min(lengths)}–{max(lengths)}, vocabularies "
            f"{len(self.source_vocab)} English / {len(self.target_vocab)} French tokens"
        )


def make_data(num_pairs: int = 6000, held_out: int = 600, seed: int = 0) -> TranslationData:
    """``num_pairs`` distinct pairs of 3–25 source tokens; ``held_out`` of them are never trained on.

    The same seed always gives the same pairs in the same order (Python's ``random.Random``).
    """
    if not isinstance(num_pairs, int) or num_pairs < 2:
        raise ValueError(f"num_pairs must be an int >= 2, got {num_pairs!r}")
    if not isinstance(held_out, int) or not 0 < held_out < num_pairs:
        raise ValueError(f"held_out must be an int in 1..{num_pairs - 1}, got {held_out!r}")
    rng = random.Random(seed)
    gold: dict[tuple[str, ...], tuple[list, list]] = {}
    pairs = []
    attempts = 0
    while len(pairs) < num_pairs:
        attempts += 1
        if attempts > 50 * num_pairs:
            raise RuntimeError(f"the grammar produced only {len(pairs)} distinct pairs")
        pair = generate_aligned_pair(rng)
        source = tuple(pair.english)
        if not MIN_SOURCE_LEN <= len(source) <= MAX_SOURCE_LEN or source in gold:
            continue
        gold[source] = (pair.links, pair.kinds)
        pairs.append((source, tuple(pair.french)))
    rng.shuffle(pairs)
    english_words, french_words = lexicon()
    return TranslationData(
        train=pairs[held_out:],
        held_out=pairs[:held_out],
        source_vocab=Vocab(english_words),
        target_vocab=Vocab(french_words),
        seed=seed,
        gold=gold,
    )


@dataclass
class Batch:
    """Padded tensors for one batch. Targets: inputs start with <bos>, outputs end with <eos>."""

    source: torch.Tensor  # (B, S) long, padded with 0
    source_lengths: torch.Tensor  # (B,) long
    target_input: torch.Tensor  # (B, T) long: <bos> y_1 ... y_{T-1}
    target_output: torch.Tensor  # (B, T) long: y_1 ... y_{T-1} <eos>, padded with 0

    @property
    def source_mask(self) -> torch.Tensor:
        """(B, S) bool, True for real source tokens (may be attended)."""
        return padding_mask(self.source_lengths, self.source.shape[1])

    def to(self, target_device) -> Batch:
        return Batch(
            *(
                tensor.to(target_device)
                for tensor in (
                    self.source,
                    self.source_lengths,
                    self.target_input,
                    self.target_output,
                )
            )
        )


def pad(sequences: Sequence[Sequence[int]], value: int = 0) -> torch.Tensor:
    longest = max(len(sequence) for sequence in sequences)
    padded = torch.full((len(sequences), longest), value, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        padded[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return padded


def make_batch(pairs, source_vocab: Vocab, target_vocab: Vocab) -> Batch:
    sources = [source_vocab.encode(source) for source, _ in pairs]
    targets = [target_vocab.encode(target) for _, target in pairs]
    bos, eos = target_vocab.stoi[BOS], target_vocab.stoi[EOS]
    return Batch(
        source=pad(sources),
        source_lengths=torch.tensor([len(source) for source in sources]),
        target_input=pad([[bos, *target] for target in targets]),
        target_output=pad([[*target, eos] for target in targets]),
    )


def bucketed_batches(pairs, data: TranslationData, batch_size: int) -> list[Batch]:
    """Batches of similar source length (little padding): sort by length, then cut."""
    ordered = sorted(pairs, key=lambda pair: (len(pair[0]), len(pair[1])))
    return [
        make_batch(ordered[start : start + batch_size], data.source_vocab, data.target_vocab)
        for start in range(0, len(ordered), batch_size)
    ]


# ==================================================================================================
# Models
# ==================================================================================================


class Encoder(nn.Module):
    """Bidirectional GRU: h_j = [→h_j; ←h_j] (B, S, 2·hidden) and a summary for the decoder."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.rnn = nn.GRU(embed_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.output_dim = 2 * hidden_dim

    def forward(self, source: torch.Tensor, lengths: torch.Tensor):
        """Returns encoder states (B, S, 2H) (zeros at padding) and the summary [→h_S; ←h_1] (B, 2H)."""
        packed = pack_padded_sequence(
            self.embedding(source), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        states, final = self.rnn(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=source.shape[1])
        summary = torch.cat(
            [final[0], final[1]], dim=-1
        )  # last forward state, first backward state
        return states, summary


class PlainDecoder(nn.Module):
    """No attention: the whole source reaches the decoder through one vector c (Cho et al., 2014).

    s_0 = tanh(W_init c);  s_i = GRU([y_{i-1}; c], s_{i-1});  p(y_i) = softmax(W_out [s_i; c; y_{i-1}])
    """

    uses_attention = False

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, encoder_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.init_state = nn.Linear(encoder_dim, hidden_dim)
        self.rnn = nn.GRU(embed_dim + encoder_dim, hidden_dim, batch_first=True)
        self.output = nn.Linear(hidden_dim + encoder_dim + embed_dim, vocab_size)

    def start(self, encoder_states, summary, source_mask) -> dict:
        return {"state": torch.tanh(self.init_state(summary)), "summary": summary}

    def forward(self, target_input, encoder_states, summary, source_mask):
        """Teacher forcing over all steps at once: logits (B, T, V), no weights."""
        embedded = self.embedding(target_input)
        context = summary[:, None, :].expand(-1, target_input.shape[1], -1)
        state0 = torch.tanh(self.init_state(summary))
        states, _ = self.rnn(torch.cat([embedded, context], dim=-1), state0[None])
        return self.output(torch.cat([states, context, embedded], dim=-1)), None

    def step(self, previous_token, memory: dict):
        embedded = self.embedding(previous_token)  # (B, E)
        summary = memory["summary"]
        _, state = self.rnn(
            torch.cat([embedded, summary], dim=-1)[:, None, :], memory["state"][None]
        )
        memory["state"] = state[0]
        logits = self.output(torch.cat([state[0], summary, embedded], dim=-1))
        return logits, None


class AttentionDecoder(nn.Module):
    """A GRU decoder that reads the source through a pluggable alignment model.

    ``style="bahdanau"`` (Bahdanau et al., 2015) — score with the *previous* state:
        c_i = Σ_j α_ij h_j with α_i = attention(s_{i-1}, h);  s_i = GRU([y_{i-1}; c_i], s_{i-1})
        p(y_i) = softmax(W_out [s_i; c_i; y_{i-1}])
    ``style="luong"`` (Luong et al., 2015) — score with the *current* state:
        h_t = GRU([y_{t-1}; h̃_{t-1} if input feeding], h_{t-1});  c_t = attention(h_t, h)
        h̃_t = tanh(W_c [c_t; h_t]);  p(y_t) = softmax(W_out h̃_t)
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
        self.attention = attention
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.init_state = nn.Linear(encoder_dim, hidden_dim)
        if style == "bahdanau":
            self.cell = nn.GRUCell(embed_dim + encoder_dim, hidden_dim)
            self.output = nn.Linear(hidden_dim + encoder_dim + embed_dim, vocab_size)
        else:
            rnn_input = embed_dim + (hidden_dim if input_feeding else 0)
            self.rnn = nn.GRU(rnn_input, hidden_dim, batch_first=True)
            self.combine = nn.Linear(encoder_dim + hidden_dim, hidden_dim, bias=False)  # W_c
            self.output = nn.Linear(hidden_dim, vocab_size)

    def start(self, encoder_states, summary, source_mask) -> dict:
        memory = {
            "state": torch.tanh(self.init_state(summary)),
            "keys": encoder_states,
            "prepared": self.attention.prepare(encoder_states),
            "mask": source_mask,
        }
        if self.input_feeding:
            memory["attentional"] = encoder_states.new_zeros(
                encoder_states.shape[0], self.hidden_dim
            )
        return memory

    def step(self, previous_token, memory: dict):
        """One decoding step: logits (B, V) and alignment weights (B, S); updates ``memory``."""
        embedded = self.embedding(previous_token)
        keys, prepared, mask = memory["keys"], memory["prepared"], memory["mask"]
        if self.style == "bahdanau":
            previous_state = memory["state"]
            context, weights = self.attention(previous_state, keys, keys, mask, prepared=prepared)
            state = self.cell(torch.cat([embedded, context], dim=-1), previous_state)
            memory["state"] = state
            return self.output(torch.cat([state, context, embedded], dim=-1)), weights
        rnn_input = embedded
        if self.input_feeding:
            rnn_input = torch.cat([embedded, memory["attentional"]], dim=-1)
        _, state = self.rnn(rnn_input[:, None, :], memory["state"][None])
        state = state[0]
        memory["state"] = state
        context, weights = self.attention(state, keys, keys, mask, prepared=prepared)
        attentional = torch.tanh(self.combine(torch.cat([context, state], dim=-1)))  # h̃_t
        if self.input_feeding:
            memory["attentional"] = attentional
        return self.output(attentional), weights

    def forward(self, target_input, encoder_states, summary, source_mask):
        """Teacher forcing: logits (B, T, V) and alignment weights (B, T, S)."""
        if self.style == "luong" and not self.input_feeding:
            embedded = self.embedding(target_input)
            state0 = torch.tanh(self.init_state(summary))
            states, _ = self.rnn(embedded, state0[None])  # h_t for every t at once
            context, weights = self.attention(states, encoder_states, encoder_states, source_mask)
            attentional = torch.tanh(self.combine(torch.cat([context, states], dim=-1)))
            return self.output(attentional), weights
        memory = self.start(encoder_states, summary, source_mask)
        if self.style == "bahdanau":
            # Only the recurrence is sequential: the output layer runs once over all steps.
            embedded = self.embedding(target_input)
            states, contexts, all_weights = [], [], []
            state = memory["state"]
            prepared = memory["prepared"]
            for position in range(target_input.shape[1]):
                context, weights = self.attention(
                    state, encoder_states, encoder_states, source_mask, prepared=prepared
                )
                state = self.cell(torch.cat([embedded[:, position], context], dim=-1), state)
                states.append(state)
                contexts.append(context)
                all_weights.append(weights)
            states, contexts = torch.stack(states, 1), torch.stack(contexts, 1)
            logits = self.output(torch.cat([states, contexts, embedded], dim=-1))
            return logits, torch.stack(all_weights, 1)
        logits, all_weights = [], []
        for position in range(target_input.shape[1]):
            step_logits, weights = self.step(target_input[:, position], memory)
            logits.append(step_logits)
            all_weights.append(weights)
        return torch.stack(logits, 1), torch.stack(all_weights, 1)


@dataclass
class Translation:
    """Greedy output for one source sentence; ``weights`` is (target steps incl. <eos>, source)."""

    source: list[str]
    tokens: list[str]
    weights: torch.Tensor | None

    @property
    def text(self) -> str:
        return detokenize(self.tokens)

    @property
    def target_labels(self) -> list[str]:
        """Row labels for ``weights``: the produced tokens, then <eos> when it was produced."""
        return self.tokens + (
            [EOS] if self.weights is not None and len(self.weights) > len(self.tokens) else []
        )


class Seq2Seq(nn.Module):
    """Encoder + decoder, with greedy translation of raw sentences."""

    def __init__(self, encoder: Encoder, decoder: nn.Module, data: TranslationData, name: str = ""):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.source_vocab, self.target_vocab = data.source_vocab, data.target_vocab
        self.name = name
        self.config: dict = {}  # build_model's arguments, so save_model / load_model can rebuild it

    def forward(self, batch: Batch):
        encoder_states, summary = self.encoder(batch.source, batch.source_lengths)
        return self.decoder(batch.target_input, encoder_states, summary, batch.source_mask)

    def _tokenize(self, sentence) -> list[str]:
        tokens = sentence.lower().split() if isinstance(sentence, str) else list(sentence)
        if not tokens:
            raise ValueError("cannot translate an empty sentence")
        missing = self.source_vocab.unknown(tokens)
        if missing:
            known = len(self.source_vocab) - 3
            raise ValueError(
                f"unknown words {sorted(set(missing))} in {' '.join(tokens)!r}: the model knows only "
                f"the {known} English words of the toy grammar (see seq2seq.lexicon())"
            )
        return tokens

    @torch.no_grad()
    def translate_batch(self, sentences: Sequence, max_len: int | None = None) -> list[Translation]:
        """Greedy decoding of several sentences at once (strings or token lists)."""
        token_lists = [self._tokenize(sentence) for sentence in sentences]
        was_training = self.training
        self.eval()
        target_device = next(self.parameters()).device
        source = pad([self.source_vocab.encode(tokens) for tokens in token_lists]).to(target_device)
        lengths = torch.tensor([len(tokens) for tokens in token_lists], device=target_device)
        mask = padding_mask(lengths, source.shape[1])
        encoder_states, summary = self.encoder(source, lengths)
        memory = self.decoder.start(encoder_states, summary, mask)
        limit = max_len or 2 * source.shape[1] + 5
        token = torch.full((len(token_lists),), self.target_vocab.stoi[BOS], device=target_device)
        produced, step_weights = [], []
        finished = torch.zeros(len(token_lists), dtype=torch.bool, device=target_device)
        for _ in range(limit):
            logits, weights = self.decoder.step(token, memory)
            token = logits.argmax(dim=-1)
            produced.append(token)
            if weights is not None:
                step_weights.append(weights)
            finished |= token == self.target_vocab.stoi[EOS]
            if bool(finished.all()):
                break
        self.train(was_training)
        produced = torch.stack(produced, 1).cpu()
        all_weights = torch.stack(step_weights, 1).cpu() if step_weights else None
        translations = []
        for row, tokens in enumerate(token_lists):
            output = self.target_vocab.decode(produced[row])
            weights = None
            if all_weights is not None:
                steps = min(len(output) + 1, all_weights.shape[1])  # the tokens and <eos>
                weights = all_weights[row, :steps, : len(tokens)]
            translations.append(Translation(tokens, output, weights))
        return translations

    def translate(self, sentence, max_len: int | None = None) -> Translation:
        """Greedy translation of one sentence; ``.text``, ``.tokens`` and alignment ``.weights``."""
        return self.translate_batch([sentence], max_len)[0]


MODEL_KINDS = (
    "plain",
    "bahdanau",
    "luong-dot",
    "luong-general",
    "luong-concat",
    "luong-local",
    "luong-feed",
)


def build_model(
    kind: str,
    data: TranslationData,
    embed_dim: int = 64,
    hidden_dim: int = 64,
    attention_dim: int = 64,
    window: int = 4,
) -> Seq2Seq:
    """A fresh model: ``plain`` (no attention), ``bahdanau``, or a Luong variant.

    ``luong-local`` is local-p with the general score and half-width ``window``; ``luong-feed`` is
    global general attention with input feeding. The encoder is a BiGRU of ``hidden_dim`` per
    direction, the decoder a GRU of 2·hidden_dim (so Luong's dot score compares equal sizes).
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    source_size, target_size = len(data.source_vocab), len(data.target_vocab)
    encoder = Encoder(source_size, embed_dim, hidden_dim)
    encoder_dim = decoder_dim = encoder.output_dim
    if kind == "plain":
        decoder = PlainDecoder(target_size, embed_dim, decoder_dim, encoder_dim)
    elif kind == "bahdanau":
        attention = AdditiveAttention(decoder_dim, encoder_dim, attention_dim)
        decoder = AttentionDecoder(target_size, embed_dim, decoder_dim, encoder_dim, attention)
    else:
        score = {"luong-dot": "dot", "luong-concat": "concat"}.get(kind, "general")
        attention = LuongAttention(
            decoder_dim,
            encoder_dim,
            score=score,
            window=window if kind == "luong-local" else None,
            hidden_dim=attention_dim,
        )
        decoder = AttentionDecoder(
            target_size,
            embed_dim,
            decoder_dim,
            encoder_dim,
            attention,
            style="luong",
            input_feeding=kind == "luong-feed",
        )
    model = Seq2Seq(encoder, decoder, data, name=kind)
    model.config = {
        "kind": kind,
        "embed_dim": embed_dim,
        "hidden_dim": hidden_dim,
        "attention_dim": attention_dim,
        "window": window,
    }
    return model


def save_model(model: Seq2Seq, path) -> None:
    """Write the model's configuration and weights (a few hundred kB) to ``path``."""
    if not model.config:
        raise ValueError("save_model needs a model made by build_model (its config rebuilds it)")
    torch.save({"config": model.config, "state_dict": model.state_dict()}, path)


def load_model(path, map_location="cpu") -> Seq2Seq:
    """Rebuild a model written by ``save_model`` (or ``python -m course_utils.seq2seq --out``)."""
    saved = torch.load(path, map_location=map_location, weights_only=True)
    english_words, french_words = lexicon()
    vocabularies = TranslationData([], [], Vocab(english_words), Vocab(french_words))
    model = build_model(data=vocabularies, **saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


# ==================================================================================================
# Training and evaluation
# ==================================================================================================


@dataclass
class TrainingLog:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(1, len(self.losses))


def train(
    model: Seq2Seq,
    data: TranslationData,
    steps: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    clip: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    target_device: torch.device | str | None = None,
) -> TrainingLog:
    """Teacher-forced cross-entropy with Adam and gradient-norm clipping, ``steps`` batches.

    Batches are length-bucketed and visited in a seeded random order, epoch after epoch; the last
    20 % of the steps decay the learning rate linearly to 10 %.
    """
    from tqdm.auto import tqdm

    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    target_device = (
        torch.device(target_device)
        if target_device is not None
        else next(model.parameters()).device
    )
    model.to(target_device)
    model.train()
    batches = [batch.to(target_device) for batch in bucketed_batches(data.train, data, batch_size)]
    order_rng = random.Random(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    decay_start = int(0.8 * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            1.0
            if step < decay_start
            else 1.0 - 0.9 * (step - decay_start) / max(1, steps - decay_start)
        ),
    )
    loss_function = nn.CrossEntropyLoss(ignore_index=0)
    log = TrainingLog()
    order: list[int] = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=f"training {model.name}", disable=not progress, mininterval=1.0)
    for step in bar:
        if not order:
            order = list(range(len(batches)))
            order_rng.shuffle(order)
        batch = batches[order.pop()]
        logits, _ = model(batch)
        loss = loss_function(logits.reshape(-1, logits.shape[-1]), batch.target_output.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        schedule.step()
        log.losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    log.seconds = time.perf_counter() - start
    return log


@dataclass
class Evaluation:
    """Exact-match accuracy over held-out pairs, overall and by source-length bucket."""

    correct: int
    total: int
    by_length: dict[tuple[int, int], tuple[int, int]]  # (low, high) → (correct, total)
    mistakes: list[tuple[str, str, str]]  # (source, expected, produced)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    def accuracy_by_length(self) -> dict[str, float]:
        return {
            f"{low}–{high}": correct / total
            for (low, high), (correct, total) in self.by_length.items()
            if total
        }

    def bucket_centers(self) -> list[float]:
        return [(low + high) / 2 for (low, high), (_, total) in self.by_length.items() if total]


LENGTH_BUCKETS = ((3, 7), (8, 11), (12, 15), (16, 19), (20, 25))


def evaluate(
    model: Seq2Seq,
    pairs,
    batch_size: int = 200,
    buckets: Sequence[tuple[int, int]] = LENGTH_BUCKETS,
) -> Evaluation:
    """Greedy-decode every source and count exact matches with the reference translation."""
    correct, mistakes = 0, []
    by_length = {bucket: [0, 0] for bucket in buckets}
    ordered = sorted(pairs, key=lambda pair: len(pair[0]))
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        for (source, target), translation in zip(
            chunk, model.translate_batch([list(source) for source, _ in chunk]), strict=True
        ):
            hit = tuple(translation.tokens) == tuple(target)
            correct += hit
            if not hit:
                mistakes.append((" ".join(source), detokenize(target), translation.text))
            for low, high in buckets:
                if low <= len(source) <= high:
                    by_length[(low, high)][0] += hit
                    by_length[(low, high)][1] += 1
    return Evaluation(
        correct, len(ordered), {key: tuple(value) for key, value in by_length.items()}, mistakes
    )


@dataclass
class Agreement:
    """Rows of one kind of French word: how many agree with the dictionary, and where the others look."""

    agreeing: int = 0
    total: int = 0
    elsewhere: dict[str, int] = field(default_factory=dict)  # kind of source word looked at instead

    @property
    def rate(self) -> float:
        return self.agreeing / self.total if self.total else float("nan")

    def most_looked_at(self) -> tuple[str, float]:
        """The kind of source word the disagreeing rows look at most, and its share of them."""
        if not self.elsewhere:
            return "", 0.0
        kind = max(self.elsewhere, key=self.elsewhere.get)
        return kind, self.elsewhere[kind] / sum(self.elsewhere.values())


def alignment_agreement(model: Seq2Seq, data: TranslationData, pairs=None) -> dict[str, Agreement]:
    """How often attention agrees with the dictionary alignment, per kind of French word.

    For every pair of ``pairs`` (default: the held-out pairs) that the model translates exactly,
    each produced word's row of weights is read: it *agrees* when its largest weight falls on a
    source word the dictionary aligns it with (``data.gold``). A source word's kind is the kind of
    the French word the dictionary aligns with it (so "see" is a verb, "her" an object pronoun).
    """
    pairs = data.held_out if pairs is None else pairs
    result: dict[str, Agreement] = {}
    for start in range(0, len(pairs), 200):
        chunk = pairs[start : start + 200]
        translations = model.translate_batch([list(source) for source, _ in chunk])
        for (source, target), translation in zip(chunk, translations, strict=True):
            if tuple(translation.tokens) != tuple(target) or translation.weights is None:
                continue
            links, kinds = data.gold[tuple(source)]
            source_kind = {
                position: kind for link, kind in zip(links, kinds, strict=True) for position in link
            }
            strongest = translation.weights[: len(target)].argmax(dim=-1).tolist()
            for position, kind in enumerate(kinds):
                tally = result.setdefault(kind, Agreement())
                tally.total += 1
                if strongest[position] in links[position]:
                    tally.agreeing += 1
                else:
                    looked_at = source_kind.get(strongest[position], "unaligned")
                    tally.elsewhere[looked_at] = tally.elsewhere.get(looked_at, 0) + 1
    return dict(sorted(result.items()))


# ==================================================================================================
# Command line
# ==================================================================================================


def main(argv: list[str] | None = None) -> int:
    from course_utils.runtime import device, seed_everything

    parser = argparse.ArgumentParser(
        prog="python -m course_utils.seq2seq",
        description="Train a toy English→French translator and report held-out exact match by length.",
    )
    parser.add_argument("--model", choices=MODEL_KINDS, default="bahdanau")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--hidden",
        type=int,
        default=64,
        help="GRU size per encoder direction, embedding and attention size",
    )
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--held-out", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default COURSE_THREADS or 1)"
    )
    parser.add_argument("--out", default=None, help="save the trained weights here (state_dict)")
    args = parser.parse_args(argv)

    seed_everything(args.seed, threads=args.threads)
    data = make_data(args.pairs, args.held_out, seed=args.seed)
    print(data.describe())
    sizes = {"embed_dim": args.hidden, "hidden_dim": args.hidden, "attention_dim": args.hidden}
    model = build_model(args.model, data, **sizes).to(device())
    log = train(model, data, args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    result = evaluate(model, data.held_out)
    print(
        f"{args.model}: {args.steps} steps in {log.seconds:.1f} s, final loss {log.losses[-1]:.4f}"
    )
    print(f"held-out exact match: {100 * result.accuracy:.1f} % ({result.correct}/{result.total})")
    for bucket, accuracy in result.accuracy_by_length().items():
        print(f"  source length {bucket:>6}: {100 * accuracy:5.1f} %")
    if args.out:
        save_model(model, args.out)
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
