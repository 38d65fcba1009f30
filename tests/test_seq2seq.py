"""The toy translation task: grammar, batches and masks, model consistency, a tiny overfit, errors."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
import torch

from course_utils import seq2seq
from course_utils.seq2seq import (
    BOS,
    EOS,
    build_model,
    detokenize,
    evaluate,
    generate_pair,
    lexicon,
    make_batch,
    make_data,
    train,
)


@pytest.fixture(scope="module")
def data():
    return make_data(num_pairs=400, held_out=40, seed=0)


def test_same_seed_same_data_and_a_clean_split(data):
    again = make_data(num_pairs=400, held_out=40, seed=0)
    assert again.train == data.train and again.held_out == data.held_out
    other = make_data(num_pairs=400, held_out=40, seed=1)
    assert other.train != data.train
    sources = [source for source, _ in data.train + data.held_out]
    assert len(set(sources)) == 400, "pairs must be distinct"
    assert not {source for source, _ in data.held_out} & {source for source, _ in data.train}
    assert all(3 <= len(source) <= 25 for source in sources)
    english, french = lexicon()
    for source, target in data.train + data.held_out:
        assert set(source) <= set(english) and set(target) <= set(french)


def test_grammar_reorders_like_french():
    rng = random.Random(0)
    pairs = {" ".join(e): detokenize(f) for e, f in (generate_pair(rng) for _ in range(4000))}
    joined = "\n".join(pairs.values())
    # colour adjectives follow the noun and agree with it; negation wraps the verb; pronouns move
    assert any("the black cat" in e and "le chat noir" in f for e, f in pairs.items())
    assert any("a white car" in e and "une voiture blanche" in f for e, f in pairs.items())
    assert any(e.startswith("i love you") and f.startswith("je t'aime") for e, f in pairs.items())
    assert any(
        e.startswith("he does not see her") and f.startswith("il ne la voit pas")
        for e, f in pairs.items()
    )
    assert "ne" in joined.split() and "pas" in joined.split()
    for english, french in pairs.items():
        assert ("not" in english.split()) == ("pas" in french.split())
        assert english.count(" and ") == french.count(" et ")
    lengths = [len(e.split()) for e in pairs]
    assert min(lengths) <= 4 and max(lengths) >= 25


def test_gold_alignment_links_every_french_word(data):
    rng = random.Random(1)
    pair = seq2seq.generate_aligned_pair(rng)
    assert (pair.english, pair.french) == tuple(generate_pair(random.Random(1)))
    kinds_seen = set()
    for source, target in data.train + data.held_out:
        links, kinds = data.gold[source]
        assert len(links) == len(kinds) == len(target)
        assert all(link and all(0 <= position < len(source) for position in link) for link in links)
        kinds_seen |= set(kinds)
        for french_word, link, kind in zip(target, links, kinds, strict=True):
            english = [source[position] for position in link]
            if kind == "negation":
                assert french_word in ("ne", "n'", "pas") and english[-1] == "not"
            if french_word in ("chat", "noir", "noire", "et") and kind != "time":
                assert english == [
                    {"chat": "cat", "noir": "black", "noire": "black", "et": "and"}[french_word]
                ]
    assert {
        "noun",
        "adjective",
        "verb",
        "subject pronoun",
        "object pronoun",
        "negation",
    } <= kinds_seen


def test_alignment_matrix_spreads_each_french_word_over_its_english_words(data):
    pair = seq2seq.generate_aligned_pair(random.Random(3))
    matrix = pair.alignment_matrix()
    assert matrix.shape == (len(pair.french), len(pair.english))
    torch.testing.assert_close(matrix.sum(dim=-1), torch.ones(len(pair.french)))
    for row, link in enumerate(pair.links):
        assert torch.nonzero(matrix[row]).flatten().tolist() == sorted(link)
    # "ne ... pas" link to both words of "does not": half each
    source, target = next((s, t) for s, t in data.train if "ne" in t)
    matrix = data.dictionary_alignment(source)
    ne_row = matrix[target.index("ne")]
    not_position = source.index("not")
    assert ne_row[not_position] == ne_row[not_position - 1] == 0.5
    assert torch.equal(data.dictionary_alignment(" ".join(source)), matrix)
    chat = [(s, t) for s, t in data.train if "chat" in t and "cat" in s][0]
    row = data.dictionary_alignment(chat[0])[chat[1].index("chat")]
    assert row[chat[0].index("cat")] == 1 and row.sum() == 1


def test_alignment_matrix_names_bad_input(data):
    with pytest.raises(ValueError, match="source_length must be a positive int, got 0"):
        seq2seq.alignment_matrix([(0,)], 0)
    with pytest.raises(
        ValueError, match=r"links\[1\] must be source positions in 0..2, got \(3,\)"
    ):
        seq2seq.alignment_matrix([(0,), (3,)], 3)
    with pytest.raises(KeyError, match="is not a sentence of this data set"):
        data.dictionary_alignment("the cat sees the cat the cat")


def test_detokenize_glues_elisions():
    assert detokenize(["je", "t'", "aime"]) == "je t'aime"
    assert detokenize(["il", "n'", "aime", "pas", "le", "chat"]) == "il n'aime pas le chat"


def test_batches_pad_and_mask(data):
    pairs = [data.train[0], data.train[1], data.train[2]]
    batch = make_batch(pairs, data.source_vocab, data.target_vocab)
    lengths = [len(source) for source, _ in pairs]
    assert batch.source_lengths.tolist() == lengths
    assert batch.source.shape == (3, max(lengths))
    assert batch.source_mask.tolist() == [[j < n for j in range(max(lengths))] for n in lengths]
    assert (batch.source[~batch.source_mask] == 0).all() and (
        batch.source[batch.source_mask] > 0
    ).all()
    bos, eos = data.target_vocab.stoi[BOS], data.target_vocab.stoi[EOS]
    for row, (_, target) in enumerate(pairs):
        assert batch.target_input[row, 0] == bos
        assert batch.target_output[row, len(target)] == eos
        assert data.target_vocab.decode(batch.target_output[row]) == list(target)
        # the decoder input is the output shifted right by one
        assert torch.equal(
            batch.target_input[row, 1 : len(target) + 1], batch.target_output[row, : len(target)]
        )


def test_encoder_states_ignore_padding(data):
    torch.manual_seed(0)
    model = build_model("bahdanau", data, embed_dim=8, hidden_dim=8, attention_dim=8)
    short, long = min(data.train, key=lambda p: len(p[0])), max(data.train, key=lambda p: len(p[0]))
    alone = make_batch([short], data.source_vocab, data.target_vocab)
    padded = make_batch([short, long], data.source_vocab, data.target_vocab)
    states_alone, summary_alone = model.encoder(alone.source, alone.source_lengths)
    states_padded, summary_padded = model.encoder(padded.source, padded.source_lengths)
    n = len(short[0])
    torch.testing.assert_close(states_padded[0, :n], states_alone[0])
    torch.testing.assert_close(summary_padded[0], summary_alone[0])
    assert (states_padded[0, n:] == 0).all()


@pytest.mark.parametrize(
    "kind", ["plain", "bahdanau", "luong-dot", "luong-concat", "luong-local", "luong-feed"]
)
def test_teacher_forcing_equals_step_by_step_decoding(data, kind):
    """The batched training path and the step() path used by translate compute the same thing."""
    torch.manual_seed(0)
    model = build_model(kind, data, embed_dim=8, hidden_dim=8, attention_dim=8, window=2).eval()
    batch = make_batch(data.train[:4], data.source_vocab, data.target_vocab)
    with torch.no_grad():
        logits, weights = model(batch)
        states, summary = model.encoder(batch.source, batch.source_lengths)
        memory = model.decoder.start(states, summary, batch.source_mask)
        for t in range(batch.target_input.shape[1]):
            step_logits, step_weights = model.decoder.step(batch.target_input[:, t], memory)
            torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=1e-5)
            if weights is not None:
                torch.testing.assert_close(step_weights, weights[:, t], atol=1e-5, rtol=1e-5)
    if weights is not None:
        assert (weights.transpose(1, 2)[~batch.source_mask] == 0).all(), "attended to padding"


def test_bahdanau_step_is_what_the_decoder_runs(data):
    """Exercise 2.3's step in the library: the decoder's step() is it, plus the output layer."""
    torch.manual_seed(0)
    model = build_model("bahdanau", data, embed_dim=8, hidden_dim=8, attention_dim=8).eval()
    batch = make_batch(data.train[:3], data.source_vocab, data.target_vocab)
    with torch.no_grad():
        states, summary = model.encoder(batch.source, batch.source_lengths)
        memory = model.decoder.start(states, summary, batch.source_mask)
        previous_state = memory["state"]
        embedding = model.decoder.embedding(batch.target_input[:, 0])
        decoder = model.decoder
        state, context, weights = seq2seq.bahdanau_step(
            previous_state, embedding, states, batch.source_mask, decoder.attention, decoder.cell
        )
        _, step_weights = decoder.step(batch.target_input[:, 0], memory)
    torch.testing.assert_close(memory["state"], state)
    torch.testing.assert_close(step_weights, weights)
    assert context.shape == (3, decoder.attention.key_dim)
    assert (weights[~batch.source_mask] == 0).all()


def test_tiny_bahdanau_overfits_a_few_sentences(data):
    """A small model memorises 24 short sentences exactly: the whole pipeline can learn."""
    torch.manual_seed(0)
    few = sorted(data.train, key=lambda p: len(p[0]))[:24]
    tiny = seq2seq.TranslationData(
        few, few[:8], data.source_vocab, data.target_vocab, gold=data.gold
    )
    model = build_model("bahdanau", tiny, embed_dim=24, hidden_dim=32, attention_dim=24)
    log = train(model, tiny, steps=150, batch_size=24, lr=1e-2, progress=False)
    assert log.losses[-1] < 0.05 < log.losses[0]
    result = evaluate(model, few)
    assert result.correct == result.total == 24, result.mistakes[:3]
    translation = model.translate(" ".join(few[0][0]))
    assert translation.tokens == list(few[0][1])
    assert translation.weights.shape == (len(few[0][1]) + 1, len(few[0][0]))
    torch.testing.assert_close(translation.weights.sum(-1), torch.ones(len(few[0][1]) + 1))
    assert translation.target_labels[-1] == EOS
    agreement = seq2seq.alignment_agreement(model, data, few)
    assert sum(tally.total for tally in agreement.values()) == sum(len(target) for _, target in few)
    for tally in agreement.values():
        assert tally.agreeing + sum(tally.elsewhere.values()) == tally.total
        assert 0 <= tally.rate <= 1


def test_evaluation_buckets_add_up(data):
    torch.manual_seed(0)
    model = build_model("plain", data, embed_dim=8, hidden_dim=8)
    result = evaluate(model, data.held_out)
    assert result.total == len(data.held_out)
    assert sum(total for _, total in result.by_length.values()) == result.total
    assert sum(correct for correct, _ in result.by_length.values()) == result.correct
    assert len(result.mistakes) == result.total - result.correct


def test_translate_rejects_unknown_words_listing_them(data):
    model = build_model("bahdanau", data, embed_dim=8, hidden_dim=8, attention_dim=8)
    with pytest.raises(ValueError, match=r"unknown words \['elephant', 'purple'\]"):
        model.translate("the purple elephant sees me")
    with pytest.raises(ValueError, match="empty sentence"):
        model.translate("   ")


def test_bad_arguments_are_named(data):
    with pytest.raises(ValueError, match="kind must be one of"):
        build_model("transformer", data)
    with pytest.raises(ValueError, match="held_out must be an int"):
        make_data(num_pairs=10, held_out=10)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        train(build_model("plain", data, embed_dim=8, hidden_dim=8), data, steps=0)
    with pytest.raises(KeyError, match="unknown tokens"):
        data.source_vocab.encode(["zebra"])


def test_command_line_trains_saves_and_reloads(tmp_path, capsys):
    checkpoint = tmp_path / "model.pt"
    code = seq2seq.main(
        [
            "--steps",
            "3",
            "--pairs",
            "120",
            "--held-out",
            "20",
            "--hidden",
            "8",
            "--out",
            str(checkpoint),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "held-out exact match" in out and "source length" in out
    model = seq2seq.load_model(checkpoint)
    assert model.name == "bahdanau"
    assert isinstance(model.translate("i love you").text, str)


def test_python_dash_m_runs_the_command_line():
    completed = subprocess.run(
        [sys.executable, "-m", "course_utils.seq2seq", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "usage: python -m course_utils.seq2seq" in completed.stdout
    assert "--steps" in completed.stdout


def test_training_follows_the_learning_rate_schedule_it_is_given(data):
    rates = []

    def schedule(step):
        rates.append(step)
        return 0.0 if step > 1 else 1.0  # one real step, then no movement

    model = seq2seq.build_model("bahdanau", data, embed_dim=8, hidden_dim=8, attention_dim=8)
    before = [p.detach().clone() for p in model.parameters()]
    seq2seq.train(model, data, steps=3, lr_schedule=schedule, foreach=True, progress=False)
    after_one = [p.detach().clone() for p in model.parameters()]
    assert rates[:3] == [1, 2, 3]  # steps count from 1, like the warm-up formula
    assert any(not torch.equal(a, b) for a, b in zip(before, after_one, strict=True))
    with pytest.raises(TypeError, match="lr_schedule must be a function of the step"):
        seq2seq.train(model, data, steps=1, lr_schedule=0.5, progress=False)
