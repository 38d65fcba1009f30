"""course_utils.helpers.validation: every check passes good input and names argument, expected and got."""

import re

import pytest
import torch

from course_utils.helpers.validation import (
    broadcasts_to,
    check_qkv,
    require_broadcastable,
    require_dim,
    require_divides,
    require_dtype,
    require_mask,
    require_number_above,
    require_one_of,
    require_positive_int,
    require_same_dtype,
    require_shapes,
    require_tensor,
)


def raises(error, message, check, *args, **kwargs):
    """``check(*args)`` raises ``error`` whose message contains ``message`` literally."""
    with pytest.raises(error, match=re.escape(message)):
        check(*args, **kwargs)


# --------------------------------------------------------------------------------------------------
# Plain arguments


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "4", None])
def test_positive_int_refuses_and_names_what_it_got(value):
    raises(
        ValueError,
        f"num_heads must be a positive int, got {value!r}",
        require_positive_int,
        "num_heads",
        value,
    )


def test_positive_int_passes_and_explains_its_meaning():
    require_positive_int("n", 1)
    raises(
        ValueError,
        "window must be a positive int (the half-width D), got 0",
        require_positive_int,
        "window",
        0,
        "the half-width D",
    )


@pytest.mark.parametrize("value", [0, -1.5, float("nan"), False, "1"])
def test_positive_number(value):
    require_number_above("temperature", 0.01)
    raises(
        ValueError,
        f"temperature must be a positive number, got {value!r}",
        require_number_above,
        "temperature",
        value,
    )


def test_number_above_a_bound():
    require_number_above("base", 2, 1)
    raises(ValueError, "base must be a number > 1, got 1.0", require_number_above, "base", 1.0, 1)


def test_one_of():
    require_one_of("score", "dot", ("dot", "general"))
    raises(
        ValueError,
        "score must be one of ('dot', 'general'), got 'cosine'",
        require_one_of,
        "score",
        "cosine",
        ("dot", "general"),
    )


def test_divides_lists_the_divisors_that_would():
    require_divides("num_heads", 4, "embed_dim", 12)
    raises(
        ValueError,
        "num_heads=5 does not divide embed_dim=12: one slice per head (try num_heads in [1, 2, 3, 4, 6, 12])",
        require_divides,
        "num_heads",
        5,
        "embed_dim",
        12,
        "one slice per head",
    )


# --------------------------------------------------------------------------------------------------
# Tensors


def test_tensor():
    require_tensor("x", torch.ones(1))
    raises(TypeError, "x must be a torch.Tensor, got list", require_tensor, "x", [1.0])


@pytest.mark.parametrize(
    ("family", "good", "bad", "message"),
    [
        (
            "floating-point",
            torch.ones(2),
            torch.ones(2, dtype=torch.long),
            "x must be a floating-point tensor, got dtype torch.int64",
        ),
        (
            "integer",
            torch.ones(2, dtype=torch.int32),
            torch.ones(2),
            "x must be an integer tensor, got dtype torch.float32",
        ),
        (
            "integer",
            torch.ones(2, dtype=torch.int32),
            torch.ones(2, dtype=torch.bool),
            "x must be an integer tensor, got dtype torch.bool",
        ),
        (
            "bool",
            torch.ones(2, dtype=torch.bool),
            torch.ones(2, dtype=torch.uint8),
            "x must be a bool tensor, got dtype torch.uint8",
        ),
    ],
)
def test_dtype_families(family, good, bad, message):
    require_dtype(family, x=good)
    raises(TypeError, message, require_dtype, family, x=bad)
    raises(TypeError, "x must be a torch.Tensor, got float", require_dtype, family, x=1.0)


def test_dtype_family_must_exist():
    raises(
        ValueError,
        "family must be one of ('floating-point', 'integer', 'bool'), got 'complex'",
        require_dtype,
        "complex",
        x=torch.ones(1),
    )


def test_same_dtype_names_each_tensor_and_its_dtype():
    require_same_dtype(a=torch.ones(1), b=torch.ones(2))
    raises(
        TypeError,
        "queries, keys and values must share a dtype, got queries torch.float32, keys torch.float64, values torch.float32",
        require_same_dtype,
        queries=torch.ones(1),
        keys=torch.ones(1, dtype=torch.float64),
        values=torch.ones(1),
    )


def test_dim():
    require_dim("x", torch.ones(2, 3), -2)
    raises(
        ValueError,
        "dim=2 is out of range for x of shape (2, 3) (expected -2 <= dim < 2)",
        require_dim,
        "x",
        torch.ones(2, 3),
        2,
    )
    raises(
        ValueError,
        "x must have at least one dimension, got a scalar",
        require_dim,
        "x",
        torch.tensor(1.0),
        0,
    )
    raises(TypeError, "dim must be an int, got 1.0", require_dim, "x", torch.ones(2), 1.0)


# --------------------------------------------------------------------------------------------------
# Shapes


def test_shapes_bind_names_and_return_their_sizes():
    sizes = require_shapes(
        ("queries", torch.ones(2, 4, 5, 32), "(*batch, n, d)"),
        ("keys", torch.ones(2, 4, 7, 32), "(*batch, m, d)"),
        ("lengths", torch.ones(3), "(m_short,)"),
    )
    assert sizes == {"batch": (2, 4), "n": 5, "d": 32, "m": 7, "m_short": 3}


def test_shapes_name_the_argument_the_pattern_and_the_shape():
    raises(
        ValueError,
        "x must have shape (..., n, embed_dim), got (8,)",
        require_shapes,
        ("x", torch.ones(8), "(..., n, embed_dim)"),
    )
    raises(
        ValueError,
        "query must have shape (d,), got (2, 3)",
        require_shapes,
        ("query", torch.ones(2, 3), "(d,)"),
    )
    raises(
        TypeError,
        "keys must be a torch.Tensor, got tuple",
        require_shapes,
        ("keys", (1, 2), "(m, d)"),
    )


def test_a_shared_name_must_agree_and_both_shapes_are_shown():
    raises(
        ValueError,
        "keys have d=64 but queries have d=32 (queries (2, 5, 32), keys (2, 7, 64))",
        require_shapes,
        ("queries", torch.ones(2, 5, 32), "(..., n, d)"),
        ("keys", torch.ones(2, 7, 64), "(..., m, d)"),
    )
    raises(
        ValueError,
        "value has batch=(3,) but key has batch=(2,) (key (2, 4, 8), value (3, 4, 8)); "
        "key and value must have the same batch dimensions",
        require_shapes,
        ("key", torch.ones(2, 4, 8), "(*batch, m, E)"),
        ("value", torch.ones(3, 4, 8), "(*batch, m, E)"),
        meanings={"batch": "batch dimensions"},
    )


def test_fixed_sizes_are_written_into_the_expected_shape():
    require_shapes(("query", torch.ones(2, 3, 8), "(..., n, embed_dim)"), sizes={"embed_dim": 8})
    raises(
        ValueError,
        "query must have shape (..., n, embed_dim=8), got (2, 3, 6)",
        require_shapes,
        ("query", torch.ones(2, 3, 6), "(..., n, embed_dim)"),
        sizes={"embed_dim": 8},
    )


def test_alternative_patterns():
    pattern = "(batch, query_dim) or (batch, steps, query_dim)"
    assert require_shapes(("query", torch.ones(2, 8), pattern))["batch"] == 2
    assert require_shapes(("query", torch.ones(2, 5, 8), pattern))["steps"] == 5
    raises(
        ValueError,
        "query must have shape (batch, query_dim=8) or (batch, steps, query_dim=8), got (8,)",
        require_shapes,
        ("query", torch.ones(8), pattern),
        sizes={"query_dim": 8},
    )


def test_malformed_patterns_are_refused():
    raises(
        ValueError,
        "a shape pattern looks like '(..., n, d)', got 'n, d'",
        require_shapes,
        ("x", torch.ones(1, 1), "n, d"),
    )
    raises(
        ValueError,
        "'...' or '*name' may only lead a shape pattern",
        require_shapes,
        ("x", torch.ones(1, 1), "(n, ...)"),
    )


def test_broadcastable_batch_dimensions():
    assert require_broadcastable(
        ("query", torch.ones(2, 1, 3, 8)), ("key", torch.ones(4, 5, 8))
    ) == (2, 4)
    raises(
        ValueError,
        "query (2, 3, 8) and key (3, 5, 8) have incompatible batch dimensions",
        require_broadcastable,
        ("query", torch.ones(2, 3, 8)),
        ("key", torch.ones(3, 5, 8)),
    )


# --------------------------------------------------------------------------------------------------
# Masks and attention inputs


def test_broadcasts_to_never_grows_the_target():
    assert broadcasts_to((1, 5), (3, 5)) and broadcasts_to((5,), (2, 3, 5))
    assert not broadcasts_to((3, 1, 5), (3, 5)) and not broadcasts_to((4,), (3, 5))


def test_mask_must_be_bool_and_broadcast():
    require_mask(None, (2, 3))
    require_mask(torch.ones(3, dtype=torch.bool), (2, 3))
    raises(
        TypeError,
        "mask must be a bool tensor with True = may attend, got dtype torch.float32; "
        "an additive float mask (0 / -inf) is a different convention",
        require_mask,
        torch.zeros(2, 3),
        (2, 3),
    )
    raises(
        TypeError,
        "mask must be a bool tensor with True = may attend, got list",
        require_mask,
        [True],
        (2, 3),
    )
    raises(
        ValueError,
        "mask of shape (2, 4) does not broadcast to scores of shape (2, 3)",
        require_mask,
        torch.ones(2, 4, dtype=torch.bool),
        (2, 3),
    )
    raises(
        ValueError,
        "mask of shape (2, 3) does not broadcast to the attention weights of shape (2, 2, 3, 3); try [:, None]",
        require_mask,
        torch.ones(2, 3, dtype=torch.bool),
        (2, 2, 3, 3),
        "the attention weights",
        "; try [:, None]",
    )


@pytest.mark.parametrize(
    ("queries", "keys", "values", "error", "message"),
    [
        (torch.ones(2, 3), torch.ones(4, 3), torch.ones(4, 5), None, None),
        (
            [1.0],
            torch.ones(4, 3),
            torch.ones(4, 5),
            TypeError,
            "queries must be a torch.Tensor, got list",
        ),
        (
            torch.ones(3),
            torch.ones(4, 3),
            torch.ones(4, 5),
            ValueError,
            "queries must have shape (..., n, d), got (3,)",
        ),
        (
            torch.ones(2, 3),
            torch.ones(4, 2),
            torch.ones(4, 5),
            ValueError,
            "keys have d=2 but queries have d=3 (queries (2, 3), keys (4, 2))",
        ),
        (
            torch.ones(2, 3),
            torch.ones(4, 3),
            torch.ones(6, 5),
            ValueError,
            "values have m=6 but keys have m=4 (keys (4, 3), values (6, 5)); keys and values must have the same number of positions",
        ),
        (
            torch.ones(2, 3),
            torch.ones(4, 3, dtype=torch.long),
            torch.ones(4, 5),
            TypeError,
            "keys must be a floating-point tensor, got dtype torch.int64",
        ),
        (
            torch.ones(2, 3),
            torch.ones(4, 3),
            torch.ones(4, 5, dtype=torch.float64),
            TypeError,
            "must share a dtype, got queries torch.float32, keys torch.float32, values torch.float64",
        ),
    ],
)
def test_check_qkv(queries, keys, values, error, message):
    if error is None:
        check_qkv(queries, keys, values)
    else:
        raises(error, message, check_qkv, queries, keys, values)
