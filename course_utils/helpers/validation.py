"""Input checks for the reference attention: one call at the top of a function, one clear error.

Every error names the argument, what was expected and what was got:

    keys have d=64 but queries have d=32 (queries (2, 5, 32), keys (2, 7, 64))
    query must have shape (..., n, embed_dim=8), got (2, 3, 6)
    mask of shape (2, 4) does not broadcast to scores of shape (2, 3)
    num_heads must be a positive int, got 0

Shapes are written the way the notebooks write them, as a small pattern per argument:

    require_shapes(("queries", queries, "(..., n, d)"), ("keys", keys, "(..., m, d)"))

``...`` stands for any number of leading dimensions; ``*batch`` does too, but must be the same for
every argument that names it; every other name is one dimension, and a name used twice must have the
same size everywhere (here ``d``). ``sizes={"embed_dim": 8}`` fixes a name's size in advance.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence

import torch

_DTYPE_FAMILIES = {
    "floating-point": lambda dtype: dtype.is_floating_point,
    "integer": lambda dtype: (
        not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool
    ),
    "bool": lambda dtype: dtype == torch.bool,
}


# --------------------------------------------------------------------------------------------------
# Plain arguments: counts, sizes, choices
# --------------------------------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require_positive_int(name: str, value, meaning: str = "") -> None:
    """``value`` is an int >= 1 (``True`` is not an int here). ``meaning`` explains it in the error."""
    if not _is_int(value) or value < 1:
        aside = f" ({meaning})" if meaning else ""
        raise ValueError(f"{name} must be a positive int{aside}, got {value!r}")


def require_number_above(name: str, value, bound: float = 0) -> None:
    """``value`` is an int or float greater than ``bound`` (a positive number by default)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not is_number or not value > bound:  # `not >` also refuses NaN
        expected = "a positive number" if bound == 0 else f"a number > {bound:g}"
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_block_size(name: str, block: int | None, default: int, length: int | None) -> int:
    """A block size: None means ``default``; a block longer than the sequence (``length``, unless
    None) is clamped to it."""
    if block is None:
        block = default
    try:
        if isinstance(block, bool):
            raise TypeError
        block = operator.index(block)  # accepts numpy integers, rejects 2.5 and "64"
    except TypeError:
        raise TypeError(f"{name} must be a positive int or None, got {block!r}") from None
    if block < 1:
        raise ValueError(f"{name} must be >= 1, got {block}")
    return block if length is None else max(1, min(block, length))


def require_one_of(name: str, value, choices: Sequence) -> None:
    """``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def require_divides(
    divisor_name: str, divisor: int, total_name: str, total: int, reason: str = ""
) -> None:
    """``divisor`` divides ``total``; the error lists the divisors that would."""
    if total % divisor != 0:
        choices = [candidate for candidate in range(1, total + 1) if total % candidate == 0]
        because = f": {reason}" if reason else ""
        raise ValueError(
            f"{divisor_name}={divisor} does not divide {total_name}={total}{because} "
            f"(try {divisor_name} in {choices})"
        )


# --------------------------------------------------------------------------------------------------
# Tensors: type, dtype, axis
# --------------------------------------------------------------------------------------------------


def require_tensor(name: str, value) -> None:
    """``value`` is a ``torch.Tensor``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")


def require_dtype(family: str, **tensors) -> None:
    """Every tensor's dtype is in ``family``: "floating-point", "integer" or "bool".

    ``require_dtype("floating-point", queries=queries, keys=keys)``
    """
    require_one_of("family", family, tuple(_DTYPE_FAMILIES))
    for name, tensor in tensors.items():
        require_tensor(name, tensor)
        if not _DTYPE_FAMILIES[family](tensor.dtype):
            article = "an" if family[0] in "aeiou" else "a"
            raise TypeError(f"{name} must be {article} {family} tensor, got dtype {tensor.dtype}")


def require_same_dtype(**tensors: torch.Tensor) -> None:
    """All tensors share one dtype (mixing float32 and float16 is an error, not a silent cast)."""
    if len({tensor.dtype for tensor in tensors.values()}) > 1:
        got = ", ".join(f"{name} {tensor.dtype}" for name, tensor in tensors.items())
        raise TypeError(f"{_list_names(tensors)} must share a dtype, got {got}")


def require_dim(name: str, tensor: torch.Tensor, dim) -> None:
    """``dim`` indexes an axis of ``tensor`` (negative indices count from the end)."""
    if tensor.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension, got a scalar")
    if not _is_int(dim):
        raise TypeError(f"dim must be an int, got {dim!r}")
    if not -tensor.dim() <= dim < tensor.dim():
        raise ValueError(
            f"dim={dim} is out of range for {name} of shape {tuple(tensor.shape)} "
            f"(expected {-tensor.dim()} <= dim < {tensor.dim()})"
        )


# --------------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------------


def require_shapes(
    *arguments: tuple[str, object, str],
    sizes: Mapping[str, int] | None = None,
    meanings: Mapping[str, str] | None = None,
) -> dict[str, int | tuple[int, ...]]:
    """Check each ``(name, tensor, pattern)`` and that names shared between patterns agree.

    A pattern is "(a, b, c)", optionally starting with ``...`` or ``*name`` for leading dimensions,
    or alternatives joined by " or ": "(batch, query_dim) or (batch, steps, query_dim)".
    ``sizes`` fixes some names in advance; ``meanings`` says in words what a name must agree on
    ("number of positions"), added to the error. Returns the size each name was bound to.
    """
    bound: dict[str, int | tuple[int, ...]] = dict(sizes or {})
    bound_by: dict[str, tuple[str, torch.Tensor]] = {}
    for name, tensor, pattern in arguments:
        require_tensor(name, tensor)
        dims = _match_alternative(pattern, tensor.shape)
        if dims is None:
            raise ValueError(
                f"{name} must have shape {_render(pattern, sizes or {})}, got {tuple(tensor.shape)}"
            )
        for symbol, size in _bind(dims, tensor.shape).items():
            if symbol not in bound:
                bound[symbol], bound_by[symbol] = size, (name, tensor)
            elif bound[symbol] != size and symbol not in bound_by:  # fixed in advance by `sizes`
                raise ValueError(
                    f"{name} must have shape {_render(pattern, sizes or {})}, "
                    f"got {tuple(tensor.shape)}"
                )
            elif bound[symbol] != size:
                first_name, first_tensor = bound_by[symbol]
                because = (
                    f"; {first_name} and {name} must have the same {meanings[symbol]}"
                    if meanings and symbol in meanings
                    else ""
                )
                raise ValueError(
                    f"{name} {_have(name)} {symbol}={_size(size)} but {first_name} "
                    f"{_have(first_name)} {symbol}={_size(bound[symbol])} ({first_name} "
                    f"{tuple(first_tensor.shape)}, {name} {tuple(tensor.shape)}){because}"
                )
    return bound


def broadcast_shape(first: Iterable[int], second: Iterable[int]) -> torch.Size | None:
    """The shape two shapes broadcast to, or None when they do not (numpy's rules).

    Written out rather than ``torch.broadcast_shapes``, whose first call imports sympy (~0.5 s):
    too slow for a check that runs on every call, and for a grader child that starts fresh.
    """
    first, second = tuple(first), tuple(second)
    width = max(len(first), len(second))
    first, second = (1,) * (width - len(first)) + first, (1,) * (width - len(second)) + second
    result = []
    for a, b in zip(first, second, strict=True):
        if a != b and 1 not in (a, b):
            return None
        result.append(b if a == 1 else a)
    return torch.Size(result)


def require_broadcastable(
    first: tuple[str, torch.Tensor], second: tuple[str, torch.Tensor], trailing: int = 2
) -> torch.Size:
    """The leading (batch) dimensions of two (..., n, d) tensors broadcast; returns their shape."""
    (first_name, first_tensor), (second_name, second_tensor) = first, second
    shape = broadcast_shape(first_tensor.shape[:-trailing], second_tensor.shape[:-trailing])
    if shape is None:
        raise ValueError(
            f"{first_name} {tuple(first_tensor.shape)} and {second_name} "
            f"{tuple(second_tensor.shape)} have incompatible batch dimensions"
        )
    return shape


def broadcasts_to(shape: Iterable[int], target: Iterable[int]) -> bool:
    """True when a tensor of ``shape`` broadcasts to exactly ``target`` (without growing it)."""
    target = torch.Size(target)
    return broadcast_shape(shape, target) == target


def require_mask(mask, target_shape: Iterable[int], target: str = "scores", hint: str = "") -> None:
    """``mask`` is None, or a bool tensor (True = may attend) that broadcasts to ``target_shape``."""
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = f"dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        additive = (
            "; an additive float mask (0 / -inf) is a different convention"
            if isinstance(mask, torch.Tensor) and mask.is_floating_point()
            else ""
        )
        raise TypeError(f"mask must be a bool tensor with True = may attend, got {got}{additive}")
    if not broadcasts_to(mask.shape, target_shape):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to {target} of shape "
            f"{tuple(target_shape)}{hint}"
        )


# --------------------------------------------------------------------------------------------------
# Scaled dot-product attention's three inputs, checked once for every module that uses them
# --------------------------------------------------------------------------------------------------


def check_qkv(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Queries (..., n, d), keys (..., m, d) and values (..., m, d_v), floating point, one dtype."""
    require_shapes(
        ("queries", queries, "(..., n, d)"),
        ("keys", keys, "(..., m, d)"),
        ("values", values, "(..., m, d_v)"),
        meanings={"m": "number of positions"},
    )
    require_dtype("floating-point", queries=queries, keys=keys, values=values)
    require_same_dtype(queries=queries, keys=keys, values=values)


# --------------------------------------------------------------------------------------------------
# Pattern helpers
# --------------------------------------------------------------------------------------------------


def _parse(pattern: str) -> list[str]:
    """ "(..., n, d)" → ["...", "n", "d"]; "(d,)" → ["d"]."""
    inner = pattern.strip()
    if not (inner.startswith("(") and inner.endswith(")")):
        raise ValueError(f"a shape pattern looks like '(..., n, d)', got {pattern!r}")
    dims = [dim.strip() for dim in inner[1:-1].split(",") if dim.strip()]
    if any(_is_variadic(dim) for dim in dims[1:]):
        raise ValueError(f"'...' or '*name' may only lead a shape pattern, got {pattern!r}")
    return dims


def _is_variadic(dim: str) -> bool:
    return dim == "..." or dim.startswith("*")


def _match_alternative(pattern: str, shape: torch.Size) -> list[str] | None:
    """The first alternative of ``pattern`` whose rank fits ``shape``, parsed; None if none does."""
    for alternative in pattern.split(" or "):
        dims = _parse(alternative)
        if dims and _is_variadic(dims[0]):
            if len(shape) >= len(dims) - 1:
                return dims
        elif len(shape) == len(dims):
            return dims
    return None


def _bind(dims: list[str], shape: torch.Size) -> dict[str, int | tuple[int, ...]]:
    """Sizes of the named dimensions: {"n": 5, "d": 32, "batch": (2, 4)}."""
    if dims and _is_variadic(dims[0]):
        leading = tuple(shape[: len(shape) - (len(dims) - 1)])
        named = dict(zip(dims[1:], shape[len(leading) :], strict=True))
        return {dims[0][1:]: leading, **named} if dims[0].startswith("*") else named
    return dict(zip(dims, shape, strict=True))


def _render(pattern: str, sizes: Mapping[str, int]) -> str:
    """The pattern with fixed sizes written in: "(..., n, embed_dim=8)"."""
    rendered = []
    for alternative in pattern.split(" or "):
        dims = [f"{dim}={sizes[dim]}" if dim in sizes else dim for dim in _parse(alternative)]
        rendered.append(f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})")
    return " or ".join(rendered)


def _size(size: int | tuple[int, ...]) -> str:
    return str(size) if isinstance(size, int) else str(tuple(size))


def _have(name: str) -> str:
    """ "keys have", "the query has"."""
    return "have" if name.endswith("s") else "has"


def _list_names(named: Mapping[str, object]) -> str:
    names = list(named)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
