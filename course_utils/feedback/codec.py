"""Plain-JSON encoding of the values that cross the sandbox boundary (never pickle).

Both directions use the same tagged forms:

* ``{"kind": "array", "dtype": "float32", "shape": [2, 3], "data": [...], "library": "torch"}`` —
  a tensor or NumPy array, ``data`` flattened in row-major order; NaN and ±inf are written as the
  strings ``"nan"``, ``"inf"`` and ``"-inf"`` (JSON has no NaN; the channel uses
  ``allow_nan=False``);
* ``{"kind": "sequence", "items": [...]}`` — a tuple or list;
* ``{"kind": "number", "value": 1.5}`` (or ``"nan"``/``"inf"``/``"-inf"``), ``{"kind": "bool",
  "value": true}``, ``{"kind": "none"}``;
* ``{"kind": "string", "value": "partial"}`` — a str of at most ``MAX_STRING`` characters (e.g. an
  exercise that answers with a label);
* ``{"kind": "object", "type": "str"}`` — anything else, reported by type name only;
* ``{"kind": "too_large", "type": "Tensor", "shape": [...]}`` — an array above ``MAX_ELEMENTS``;
* ``{"kind": "module", "constructor": "torch.nn.GRUCell", "arguments": [...], "state": {...}}`` —
  INPUT ONLY: a ``ModuleInput`` (an ``nn.Module`` an exercise takes as an argument, e.g. the
  attention and the GRU cell of a decoder step), rebuilt on the other side from its class, its
  encoded arguments and its encoded ``state_dict``. Only a class the exercise lists in its
  ``input_modules`` is rebuilt (``decode_input``'s allow-list). ``decode_output`` rejects it: a
  child never sends modules back.

The child calls ``encode`` on what the learner's function returned and ``decode_input`` on the
hidden-test inputs; the parent calls ``encode`` on those inputs and ``decode_output`` on the child's
messages. ``decode_output`` trusts nothing: every field is type- and size-checked and a bad value
raises ``ProtocolError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_ELEMENTS = 500_000  # per array; ~10 MB of JSON
MAX_DEPTH = 4  # nested tuples/lists
MAX_ITEMS = 32  # items per tuple/list
MAX_DIMENSIONS = 8
MAX_STRING = 200  # characters of a returned str; longer ones cross as an object
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
INTEGER_DTYPES = ("int8", "int16", "int32", "int64", "uint8")
DTYPES = FLOAT_DTYPES + INTEGER_DTYPES + ("bool",)
# How each dtype name is held in NumPy on the parent side (NumPy has no bfloat16).
_NUMPY_DTYPE = {name: ("float32" if name == "bfloat16" else name) for name in DTYPES}


class ProtocolError(ValueError):
    """A message from the child does not follow the protocol (malformed, too big, wrong type)."""


@dataclass(frozen=True)
class Array:
    """A decoded array: its values, its dtype name as the child reported it, and its library."""

    values: np.ndarray
    dtype: str
    library: str  # "torch" or "numpy"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)


@dataclass(frozen=True)
class ModuleInput:
    """An ``nn.Module`` sent to the learner's function as an input, by class, arguments and weights.

    ``ModuleInput(nn.GRUCell, (14, 5), cell.state_dict())`` is rebuilt on the other side as
    ``GRUCell(14, 5)`` with those weights loaded (strictly). Never pickle.
    """

    module_class: type  # an nn.Module subclass the exercise lists in its input_modules
    arguments: tuple  # what encode carries: numbers, bools, None, tensors
    state: dict  # parameter and buffer name -> tensor

    def __post_init__(self):
        import torch

        if not (
            isinstance(self.module_class, type) and issubclass(self.module_class, torch.nn.Module)
        ):
            raise ValueError(
                f"ModuleInput constructor must be one of the nn.Module classes, got {self.module_class!r}"
            )

    @property
    def constructor(self) -> str:
        """The class's dotted name, as the encoded form carries it."""
        return dotted_name(self.module_class)


def dotted_name(module_class: type) -> str:
    """``torch.nn.GRUCell`` -> "torch.nn.modules.rnn.GRUCell": where the class is defined."""
    return f"{module_class.__module__}.{module_class.__qualname__}"


@dataclass(frozen=True)
class Opaque:
    """A returned object the codec does not transport (a string, a dict, a module, ...)."""

    type_name: str


@dataclass(frozen=True)
class TooLarge:
    """An array with more than MAX_ELEMENTS elements: only its type and shape cross over."""

    type_name: str
    shape: tuple[int, ...]


def _finite_or_tag(number: float) -> float | str:
    if math.isfinite(number):
        return number
    return "nan" if number != number else ("inf" if number > 0 else "-inf")


def _encode_array(flat_values: list, dtype: str, shape: list[int], library: str) -> dict:
    if dtype in FLOAT_DTYPES:
        flat_values = [_finite_or_tag(float(value)) for value in flat_values]
    return {
        "kind": "array",
        "dtype": dtype,
        "shape": shape,
        "data": flat_values,
        "library": library,
    }


def encode(value: Any, depth: int = 0) -> dict:
    """Encode ``value`` (a tensor, array, number, bool, None, or tuple/list of those)."""
    torch = _torch_if_loaded()
    if torch is not None and isinstance(value, torch.Tensor):
        shape = [int(size) for size in value.shape]
        if value.numel() > MAX_ELEMENTS:
            return {"kind": "too_large", "type": type(value).__name__, "shape": shape}
        dtype = str(value.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            return {"kind": "object", "type": f"tensor of dtype {dtype}"}
        flat = value.detach().cpu()
        if dtype == "bfloat16":
            flat = flat.float()
        return _encode_array(flat.reshape(-1).tolist(), dtype, shape, "torch")
    if isinstance(value, np.ndarray):
        shape = [int(size) for size in value.shape]
        if value.size > MAX_ELEMENTS:
            return {"kind": "too_large", "type": "ndarray", "shape": shape}
        dtype = str(value.dtype)
        if dtype not in DTYPES:
            return {"kind": "object", "type": f"ndarray of dtype {dtype}"}
        return _encode_array(value.reshape(-1).tolist(), dtype, shape, "numpy")
    if value is None:
        return {"kind": "none"}
    if isinstance(value, (bool, np.bool_)):
        return {"kind": "bool", "value": bool(value)}
    if isinstance(value, (int, np.integer)):
        if abs(int(value)) > 2**63:
            return {"kind": "object", "type": "int too large"}
        return {"kind": "number", "value": int(value)}
    if isinstance(value, (float, np.floating)):
        return {"kind": "number", "value": _finite_or_tag(float(value))}
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            return {"kind": "object", "type": "str (too long)"}
        return {"kind": "string", "value": value}
    if isinstance(value, ModuleInput):
        return {
            "kind": "module",
            "constructor": value.constructor,
            "arguments": [encode(argument, depth + 1) for argument in value.arguments],
            "state": {str(name): encode(tensor, depth + 1) for name, tensor in value.state.items()},
        }
    if isinstance(value, (tuple, list)):
        if depth >= MAX_DEPTH or len(value) > MAX_ITEMS:
            return {"kind": "object", "type": f"{type(value).__name__} too deep or too long"}
        return {"kind": "sequence", "items": [encode(item, depth + 1) for item in value]}
    return {"kind": "object", "type": type(value).__name__}


def _torch_if_loaded():
    """torch, imported lazily so that encoding plain values does not need it."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency of the course
        return None
    return torch


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ProtocolError(message)


def _decode_shape(raw) -> tuple[int, ...]:
    _expect(isinstance(raw, list) and len(raw) <= MAX_DIMENSIONS, "array shape is not a short list")
    for size in raw:
        _expect(
            isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= MAX_ELEMENTS,
            "array shape holds something other than sizes",
        )
    return tuple(raw)


def _decode_array(message: dict) -> Array:
    dtype = message.get("dtype")
    _expect(isinstance(dtype, str) and dtype in DTYPES, f"unknown array dtype {dtype!r:.40}")
    shape = _decode_shape(message.get("shape"))
    count = math.prod(shape)
    data = message.get("data")
    _expect(count <= MAX_ELEMENTS, "array too large")
    _expect(isinstance(data, list) and len(data) == count, "array data does not match its shape")
    library = message.get("library", "torch")
    _expect(library in ("torch", "numpy"), "unknown array library")
    if dtype == "bool":
        _expect(all(type(item) is bool for item in data), "bool array holds non-bool data")
    elif dtype in INTEGER_DTYPES:
        _expect(all(type(item) is int for item in data), "integer array holds non-integer data")
    else:
        _expect(
            all(
                (type(item) in (int, float)) or (type(item) is str and item in NON_FINITE)
                for item in data
            ),
            "float array holds something other than numbers and 'nan'/'inf'/'-inf'",
        )
        data = [NON_FINITE[item] if type(item) is str else item for item in data]
    try:
        values = np.array(data, dtype=_NUMPY_DTYPE[dtype]).reshape(shape)
    except (ValueError, OverflowError, TypeError) as error:
        raise ProtocolError(f"array data cannot be converted: {error}") from None
    return Array(values=values, dtype=dtype, library=library)


def decode_output(message: Any, depth: int = 0) -> Any:
    """Validate and decode one encoded value from the child (see the module docstring)."""
    _expect(isinstance(message, dict), "encoded value is not an object")
    kind = message.get("kind")
    if kind == "array":
        return _decode_array(message)
    if kind == "sequence":
        items = message.get("items")
        _expect(depth < MAX_DEPTH, "sequence nested too deeply")
        _expect(isinstance(items, list) and len(items) <= MAX_ITEMS, "sequence items malformed")
        return tuple(decode_output(item, depth + 1) for item in items)
    if kind == "number":
        value = message.get("value")
        if type(value) is str:
            _expect(value in NON_FINITE, "number is neither numeric nor 'nan'/'inf'/'-inf'")
            return NON_FINITE[value]
        _expect(type(value) in (int, float), "number value is not a number")
        return value
    if kind == "bool":
        _expect(type(message.get("value")) is bool, "bool value is not a bool")
        return message["value"]
    if kind == "string":
        value = message.get("value")
        _expect(type(value) is str and len(value) <= MAX_STRING, "string value malformed")
        return value
    if kind == "none":
        return None
    if kind == "object":
        type_name = message.get("type")
        _expect(isinstance(type_name, str), "object without a type name")
        return Opaque(type_name[:80])
    if kind == "too_large":
        type_name = message.get("type")
        _expect(isinstance(type_name, str), "too_large without a type name")
        return TooLarge(type_name[:80], _decode_shape_unbounded(message.get("shape")))
    raise ProtocolError(f"unknown value kind {kind!r:.40}")


def _decode_shape_unbounded(raw) -> tuple[int, ...]:
    _expect(isinstance(raw, list) and len(raw) <= 64, "shape is not a short list")
    _expect(
        all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in raw),
        "shape holds something other than sizes",
    )
    return tuple(raw)


def decode_input(message: dict, input_modules: Iterable[type] = ()):
    """Turn an encoded input into a torch tensor / Python value (a fresh object every time).

    Inputs come from the trusted side, so only their shape is checked; a module is rebuilt only if
    its class is one of ``input_modules`` (the exercise's declaration).
    """
    kind = message["kind"]
    if kind == "array":
        import torch

        data = [
            NON_FINITE.get(item, item) if type(item) is str else item for item in message["data"]
        ]
        dtype = getattr(torch, message["dtype"])
        values = torch.tensor(data, dtype=dtype).reshape(message["shape"])
        return values if message.get("library", "torch") == "torch" else values.numpy()
    if kind == "sequence":
        return tuple(decode_input(item, input_modules) for item in message["items"])
    if kind == "number":
        value = message["value"]
        return NON_FINITE[value] if type(value) is str else value
    if kind == "bool":
        return message["value"]
    if kind == "none":
        return None
    if kind == "string":
        return message["value"]
    if kind == "module":
        return _build_module(message, input_modules)
    raise ValueError(f"cannot decode input of kind {kind!r}")


def _build_module(message: dict, input_modules: Iterable[type]):
    """Construct a ModuleInput's class (one of ``input_modules``) and load its weights."""
    import torch

    allowed = {dotted_name(module_class): module_class for module_class in input_modules}
    constructor = message["constructor"]
    if constructor not in allowed:
        raise ValueError(
            f"cannot build module {constructor!r}: not one of the exercise's input_modules"
        )
    arguments = [decode_input(argument, input_modules) for argument in message["arguments"]]
    with torch.random.fork_rng(devices=[]):  # random initialisation leaves the learner's RNG alone
        module = allowed[constructor](*arguments)
    state = {name: decode_input(tensor) for name, tensor in message["state"].items()}
    module.load_state_dict(state, strict=True)
    return module
