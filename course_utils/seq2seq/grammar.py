"""The toy English→French grammar of notebooks 02 and 03, with its dictionary word alignment.

``generate_pair`` writes one English sentence and its French translation; the translations need
the reorderings that made attention necessary:

* adjective–noun order:  "the small black cat" → "le petit chat noir"
* gender agreement:      "a black car" → "une voiture noire"  (article and adjective follow the noun)
* negation around verb:  "she does not see the dog" → "elle ne voit pas le chien"
* object pronouns:       "i love you" → "je t' aime"; "he does not see her" → "il ne la voit pas"
* adverbs after verb:    "we often look at the cat" → "nous regardons souvent le chat"
* many-to-one words:     "listen to" → "écoute", and elision "je" → "j'" before a vowel
* coordination:          up to three clauses joined by "and" → "et" (3 to 25 source tokens)

Tokens are lower-case words; French clitics such as ``t'`` are tokens of their own
(``detokenize`` glues them back: "je t'aime").

``generate_aligned_pair`` also returns which English words each French word translates (the
dictionary or "textbook" alignment); ``alignment_matrix`` turns it into a (French, English) matrix
that can be laid beside a model's attention weights.

Every random draw goes through one ``random.Random``, in a fixed order: the same seed gives the
same sentences forever (the notebooks' stored outputs depend on it), so do not reorder the draws.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

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


class _Agreeing(NamedTuple):
    """A word whose French form agrees with the noun's gender (a determiner or an adjective)."""

    english: str
    masculine: str
    feminine: str

    def french(self, feminine_noun: bool) -> str:
        return self.feminine if feminine_noun else self.masculine


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
    _Agreeing("the", "le", "la"),
    _Agreeing("a", "un", "une"),
    _Agreeing("my", "mon", "ma"),
    _Agreeing("this", "ce", "cette"),
)
_ADJECTIVES_BEFORE = (  # stay before the noun in French
    _Agreeing("small", "petit", "petite"),
    _Agreeing("big", "gros", "grosse"),
    _Agreeing("old", "vieux", "vieille"),
    _Agreeing("pretty", "joli", "jolie"),
)
_ADJECTIVES_AFTER = (  # colours move after the noun in French
    _Agreeing("black", "noir", "noire"),
    _Agreeing("white", "blanc", "blanche"),
    _Agreeing("red", "rouge", "rouge"),
    _Agreeing("green", "vert", "verte"),
    _Agreeing("blue", "bleu", "bleue"),
    _Agreeing("grey", "gris", "grise"),
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

    def alignment_matrix(self) -> torch.Tensor:
        """(French tokens, English tokens): see ``alignment_matrix``."""
        return alignment_matrix(self.links, len(self.english))


def alignment_matrix(links: Sequence[Sequence[int]], source_length: int) -> torch.Tensor:
    """The dictionary alignment as a (target tokens, source tokens) float matrix.

    Row k spreads a weight of 1 evenly over the source positions ``links[k]`` that target token k
    translates (*ne* ↔ *do not* gets ½ on each word), so it compares directly with a row of
    attention weights. ``links`` is ``AlignedPair.links`` or the first half of ``TranslationData.gold``.
    """
    if not isinstance(source_length, int) or source_length < 1:
        raise ValueError(f"source_length must be a positive int, got {source_length!r}")
    matrix = torch.zeros(len(links), source_length)
    for row, link in enumerate(links):
        if not link or not all(0 <= position < source_length for position in link):
            raise ValueError(
                f"links[{row}] must be source positions in 0..{source_length - 1}, got {link!r}"
            )
        matrix[row, list(link)] = 1.0 / len(link)
    return matrix


# --------------------------------------------------------------------------------------------------
# Phrases and clauses
# --------------------------------------------------------------------------------------------------


def _noun_phrase(rng: random.Random) -> AlignedPair:
    """det [adj-before] [colour] noun → dét [adj-before] nom [couleur], agreeing in gender."""
    english_noun, french_noun, gender = rng.choice(_NOUNS)
    feminine = gender == "f"
    determiner = rng.choice(_DETERMINERS)
    english = [determiner.english]
    french, links, kinds = [determiner.french(feminine)], [(0,)], ["determiner"]
    if rng.random() < 0.35:
        adjective = rng.choice(_ADJECTIVES_BEFORE)
        english.append(adjective.english)
        french.append(adjective.french(feminine))
        links.append((len(english) - 1,))
        kinds.append("adjective")
    colour = rng.choice(_ADJECTIVES_AFTER) if rng.random() < 0.5 else None
    if colour:
        english.append(colour.english)
    english.append(english_noun)
    french.append(french_noun)  # the noun comes before its colour in French
    links.append((len(english) - 1,))
    kinds.append("noun")
    if english[0] == "a" and english[1].startswith(tuple("aeiou")):
        english[0] = "an"  # "an old cat"
    if colour:
        french.append(colour.french(feminine))
        links.append((len(english) - 2,))
        kinds.append("adjective")
    return AlignedPair(english, french, links, kinds)


@dataclass
class _ClauseParts:
    """What one clause says, drawn before any word is written."""

    person: str  # the subject's person, a key of _PERSONS, or "3s" for a noun phrase
    subject: AlignedPair
    verb: tuple  # (English base, English 3rd singular, French forms): an entry of _VERBS
    negated: bool
    adverb: tuple[str, str] | None
    pronoun_person: str | None  # the object is this pronoun …
    noun_object: AlignedPair | None  # … or this noun phrase


@dataclass
class _EnglishPositions:
    """Where the parts of a clause sit in its English words (the French words link to them)."""

    negation: tuple[int, ...]  # "do not" / "does not", or ()
    adverb: int | None
    verb: tuple[int, ...]  # "see", or "look at"
    object_start: int


def _draw_clause_parts(rng: random.Random) -> _ClauseParts:
    """Subject, verb, negation, adverb and object, drawn in this order."""
    if rng.random() < 0.6:
        person = rng.choice(list(_PERSONS))
        subject = AlignedPair(
            [_PERSONS[person][0]], [_PERSONS[person][1]], [(0,)], ["subject pronoun"]
        )
    else:
        person = "3s"
        subject = _noun_phrase(rng)
    verb = rng.choice(_VERBS)
    negated = rng.random() < 0.35
    adverb = rng.choice(_ADVERBS) if rng.random() < 0.25 else None
    if rng.random() < 0.4:
        candidates = [p for p in _PERSONS if (person, p) not in _SAME_PERSON]
        return _ClauseParts(person, subject, verb, negated, adverb, rng.choice(candidates), None)
    return _ClauseParts(person, subject, verb, negated, adverb, None, _noun_phrase(rng))


def _english_clause(parts: _ClauseParts) -> tuple[list[str], _EnglishPositions]:
    """subject [do/does not] [adverb] verb object, and where each part landed."""
    third_singular = parts.person.startswith("3s")
    english = list(parts.subject.english)
    negation: tuple[int, ...] = ()
    if parts.negated:
        english += ["does" if third_singular else "do", "not"]
        negation = (len(english) - 2, len(english) - 1)
    adverb = None
    if parts.adverb:
        english.append(parts.adverb[0])
        adverb = len(english) - 1
    base, third, _ = parts.verb
    verb_words = base if parts.negated or not third_singular else third
    verb = tuple(range(len(english), len(english) + len(verb_words)))
    english += list(verb_words)
    object_start = len(english)
    if parts.pronoun_person:
        english += [_PERSONS[parts.pronoun_person][2]]
    else:
        english += parts.noun_object.english
    return english, _EnglishPositions(negation, adverb, verb, object_start)


def _french_clause(parts: _ClauseParts, english: list[str], at: _EnglishPositions) -> AlignedPair:
    """sujet [ne] [pronom] verbe [pas] [adverbe] [objet], eliding before a vowel, linked to English."""
    french_verb = parts.verb[2][_CONJUGATION_SLOT[parts.person]]
    verb_block = [(french_verb, at.verb, "verb")]
    if parts.pronoun_person:
        pronoun = _PERSONS[parts.pronoun_person][3]
        verb_block.insert(0, (pronoun, (at.object_start,), "object pronoun"))
    if parts.negated:
        verb_block.insert(0, ("ne", at.negation, "negation"))
    for index in range(len(verb_block) - 1):  # ne aime → n'aime, le aime → l'aime
        if verb_block[index + 1][0].startswith(_VOWELS):
            verb_block[index] = (_elide(verb_block[index][0]), *verb_block[index][1:])
    subject = parts.subject
    eliding = subject.french == ["je"] and verb_block[0][0].startswith(_VOWELS)
    clause = AlignedPair(
        english,
        ["j'"] if eliding else list(subject.french),
        list(subject.links),
        list(subject.kinds),
    )
    for word, link, kind in verb_block:
        clause.french.append(word)
        clause.links.append(link)
        clause.kinds.append(kind)
    if parts.negated:
        clause.french.append("pas")
        clause.links.append(at.negation)
        clause.kinds.append("negation")
    if parts.adverb:
        clause.french.append(parts.adverb[1])
        clause.links.append((at.adverb,))
        clause.kinds.append("adverb")
    if parts.noun_object:
        clause.french += parts.noun_object.french
        clause.links += [
            tuple(at.object_start + p for p in link) for link in parts.noun_object.links
        ]
        clause.kinds += parts.noun_object.kinds
    return clause


def _prepositional_phrase(rng: random.Random) -> AlignedPair:
    """preposition + noun phrase: "under the red table" → "sous la table rouge"."""
    english_preposition, french_preposition = rng.choice(_PREPOSITIONS)
    phrase = AlignedPair([english_preposition], [french_preposition], [(0,)], ["preposition"])
    phrase.append(_noun_phrase(rng))
    return phrase


def _time_phrase(rng: random.Random) -> AlignedPair:
    """A time: *every day* → *chaque jour* word by word; *tonight* → *ce soir*, both to both."""
    english_time, french_time = rng.choice(_TIMES)
    if len(english_time) == len(french_time):
        time_links = [(position,) for position in range(len(english_time))]
    else:
        time_links = [tuple(range(len(english_time)))] * len(french_time)
    return AlignedPair(
        list(english_time), list(french_time), time_links, ["time"] * len(french_time)
    )


def _clause(rng: random.Random) -> AlignedPair:
    """Subject [not] [adverb] verb object [prepositional phrase] [time]."""
    parts = _draw_clause_parts(rng)
    english, positions = _english_clause(parts)
    clause = _french_clause(parts, english, positions)
    if rng.random() < 0.3:
        clause.append(_prepositional_phrase(rng))
    if rng.random() < 0.2:
        clause.append(_time_phrase(rng))
    return clause


# --------------------------------------------------------------------------------------------------
# Sentences and the lexicon
# --------------------------------------------------------------------------------------------------


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
        for word in table:
            english.add(word.english)
            french |= {word.masculine, word.feminine}
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
