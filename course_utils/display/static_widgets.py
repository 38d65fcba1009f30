"""Stand-ins for the few ipywidgets the explorers use, where ipywidgets 8 is not available.

A hosted Jupyter without ipywidgets 8 (or a plain Python session) still gets every explorer: its
figure is drawn once, statically, in the cell's output, and the controls are plain objects whose
``value`` can be set from code (``explorer.slider.value = 0.1`` draws again), with the same clamping
and change notifications as ipywidgets. ``course_utils.display.widgets`` imports this module instead of
ipywidgets in that case; nothing else uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

INTERACTIVE_NOTE = (
    "(interactive controls need ipywidgets 8: this is a static figure; set the controls' .value "
    "from code to redraw)"
)


class _Control:
    """A value with observers, like an ipywidgets control (``observe(handler, names="value")``)."""

    def __init__(self, value=None, description: str = "", **_style):
        self.description = description
        self._value = value
        self._observers: list[Callable] = []
        self._held = False

    def _clamped(self, value):
        return value

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, new) -> None:
        old, self._value = self._value, self._clamped(new)
        if self._value != old and not self._held:
            self._notify(old)

    def _notify(self, old) -> None:
        for handler in list(self._observers):
            handler({"name": "value", "old": old, "new": self._value, "owner": self})

    @contextmanager
    def hold_trait_notifications(self) -> Iterator[None]:
        """Change several things, notify once at the end (if the value changed), as traitlets does."""
        old, self._held = self._value, True
        try:
            yield
        finally:
            self._held = False
            if self._value != old:
                self._notify(old)

    def observe(self, handler: Callable, names: str = "value") -> None:
        if names != "value":
            raise ValueError(f"names: only 'value' is observed here, got {names!r}")
        self._observers.append(handler)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description or 'value'}={self._value!r})"


def _bound(name: str) -> property:
    """A slider bound: setting it re-clamps the value (notifying observers if it moves)."""

    def get(self):
        return getattr(self, f"_{name}")

    def set(self, bound) -> None:
        setattr(self, f"_{name}", bound)
        self.value = self._value

    return property(get, set)


class IntSlider(_Control):
    """An integer in [min, max]; changing the bounds clamps the value (and notifies), as ipywidgets does."""

    def __init__(self, value: int = 0, min: int = 0, max: int = 100, **kwargs):  # noqa: A002
        self._min, self._max = min, max
        super().__init__(value, **kwargs)
        self._value = self._clamped(value)

    def _clamped(self, value):
        return type(self._min)(min(max(value, self._min), self._max))

    min = _bound("min")  # noqa: A003 - ipywidgets' names
    max = _bound("max")  # noqa: A003


class FloatLogSlider(IntSlider):
    """A float in [base**min, base**max]."""

    def __init__(
        self, value: float = 1.0, base: float = 10.0, min: float = 0.0, max: float = 4.0, **kwargs
    ):  # noqa: A002
        self.base = base
        super().__init__(value, min=min, max=max, **kwargs)

    def _clamped(self, value):
        return float(min(max(value, self.base**self._min), self.base**self._max))


class _Choice(_Control):
    def __init__(self, options: Sequence = (), value=None, **kwargs):
        self.options = tuple(options)
        super().__init__(value if value is not None else self.options[0], **kwargs)

    def _clamped(self, value):
        if value not in self.options:
            raise ValueError(f"value: expected one of {self.options}, got {value!r}")
        return value


class ToggleButtons(_Choice):
    pass


class Dropdown(_Choice):
    pass


class Checkbox(_Control):
    def _clamped(self, value):
        return bool(value)


class Output:
    """Where ipywidgets would capture the figure; here the figure goes straight to the cell output."""

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def clear_output(self, wait: bool = False) -> None:
        return None


class _Box:
    def __init__(self, children: Sequence = ()):
        self.children = tuple(children)

    def __repr__(self) -> str:
        return INTERACTIVE_NOTE


class HBox(_Box):
    pass


class VBox(_Box):
    pass
