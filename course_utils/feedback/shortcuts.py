"""Noticing a forbidden shortcut: the learner's code reaching what the exercise asks them to write.

``with ShortcutWatch(["torch.softmax", "course_utils.softmax.softmax"]) as watch: fn(...)`` records,
in ``watch.used``, each forbidden callable that the learner's code reached while the watch was open,
by whatever route: a direct call, a helper, a thread, ``functools.partial``, ``__wrapped__``, a copy of
the function's code, ``torch.compile``, or a value whose ``__iter__`` calls it when the codec encodes
it. A course function the exercise allows may still use ``torch.softmax`` inside: only a call whose
nearest caller outside torch is the learner's own code counts. Decorators (``@torch.no_grad()``) and
the learner's own partials are idiomatic and never count.

How: every forbidden callable gets a *marker* that notes the call and then does exactly what the
callable did.

* A Python function (a reference, ``nn.Module.forward``, ``torch.nn.functional.softmax``) is first
  unwrapped (``functools.wraps`` chains, so ``@torch.no_grad()`` methods are the method, not torch's
  shared wrapper), then its ``__code__`` is swapped for a marker's. The function object stays the
  same, so every reference to it, every partial and every thread reaches the marker.
* A built-in (``torch.softmax``) or a tensor method (``torch.Tensor.softmax``) is replaced where its
  dotted name says by a Python function that marks and calls it; a profile hook also notes a direct
  call of the original built-in, for code that bound it before the watch opened.
* A dotted name that is a *package* (``course_utils.exercises``) marks every function and method of
  every module in it: the specs' helpers and named mistakes, which must never do an exercise's work.

The grader's child installs the markers once, after the trusted setup and before any submitted code
(``install_markers``), so a submission never sees an unmarked forbidden function; ``check()`` installs
them for the duration of one case and restores everything after. Who is "the learner": a frame whose
globals are not the namespace of an imported ``torch`` or ``course_utils`` module (spec modules
are library code too, but calling one is never allowed), so a helper compiled with a library file name
but run in the learner's namespace is the learner's. The routes still open are listed in docs/grading.md.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterable

LIBRARIES = ("torch", "course_utils")
SPEC_PACKAGE = "course_utils.exercises"  # its functions are never the learner's to call


def resolve(dotted_name: str):
    """``"torch.nn.functional.softmax"`` -> the object; the longest importable module prefix wins."""
    parts = dotted_name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                target = getattr(target, attribute)
        except AttributeError:
            break
        return target
    raise ValueError(f"cannot resolve forbidden call {dotted_name!r}")


def _owner_and_attribute(dotted_name: str):
    """The object holding the last part of ``dotted_name`` (a module or a class), and that name."""
    owner_name, _, attribute = dotted_name.rpartition(".")
    return resolve(owner_name), attribute


def _module_of(frame) -> str | None:
    """The name of the imported module whose namespace ``frame`` runs in, else None."""
    name = frame.f_globals.get("__name__")
    module = sys.modules.get(name) if isinstance(name, str) else None
    if module is None or getattr(module, "__dict__", None) is not frame.f_globals:
        return None
    return name


def _in_package(name: str | None, package: str) -> bool:
    return name is not None and (name == package or name.startswith(package + "."))


def is_library_frame(frame) -> bool:
    """True for code of torch or the course library, run in its own module's namespace."""
    name = _module_of(frame)
    return any(_in_package(name, library) for library in LIBRARIES)


def _is_torch_frame(frame) -> bool:
    return _in_package(_module_of(frame), "torch")


def learner_called(frame, through_torch: bool) -> bool:
    """Whether the code that made this call, ``frame``, is the learner's.

    ``through_torch``: look through torch's own frames first (``block(x)`` reaches ``forward``
    through ``nn.Module.__call__``, and the call is the learner's all the same).
    """
    while through_torch and frame is not None and _is_torch_frame(frame):
        frame = frame.f_back
    return frame is not None and not is_library_frame(frame)


# -- the window: which names count now, and what was reached ------------------------------------


class _Window:
    def __init__(self, names: Iterable[str]):
        self.names = frozenset(names)
        self.used: list[str] = []

    def note(self, name: str) -> None:
        if name not in self.used:
            self.used.append(name)


_window: _Window | None = None  # one case runs at a time in a process


def _reached(name: str, caller, through_torch: bool, reported: str | None = None) -> None:
    """A marked callable ``name`` was called by ``caller``: noted when the window counts it."""
    window = _window
    if window is None or name not in window.names:
        return
    if learner_called(caller, through_torch):
        window.note(reported or name)


# -- markers ----------------------------------------------------------------------------------


def _marker_source(free_variables: int) -> str:
    """A function ``marker(*args, **kwargs)`` with ``free_variables`` free variables (a function's
    ``__code__`` can only be swapped for one with as many) that returns ``"MARK"(args, kwargs)``;
    the string constant is then replaced by the marking function itself."""
    names = [f"_free{index}" for index in range(free_variables)]
    lines = ["def _outer():"]
    lines += [f"    {name} = None" for name in names]
    lines += ["    def marker(*args, **kwargs):"]
    lines += [f"        {name}" for name in names]  # a use makes it a free variable
    lines += ['        return "MARK"(args, kwargs)', "    return marker"]
    return "\n".join(lines)


@functools.cache
def _marker_template(free_variables: int) -> types.CodeType:
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # "'str' object is not callable"
        source = _marker_source(free_variables)
        exec(compile(source, "<forbidden-call marker>", "exec"), namespace)
    return namespace["_outer"]().__code__


def _marker_code(original: types.CodeType, mark: Callable) -> types.CodeType:
    """A code object calling ``mark``, with ``original``'s free-variable count, name, file and line
    (so ``inspect.getsource`` still shows the real function)."""
    code = _marker_template(len(original.co_freevars))
    constants = tuple(mark if constant == "MARK" else constant for constant in code.co_consts)
    extra = {"co_qualname": original.co_qualname} if hasattr(original, "co_qualname") else {}
    return code.replace(
        co_consts=constants,
        co_filename=original.co_filename,
        co_firstlineno=original.co_firstlineno,
        co_name=original.co_name,
        **extra,
    )


class _Marked:
    """One marked callable and how to put it back."""

    def __init__(self, name: str, target, owner_attribute, helper: bool = False):
        self.name = name
        self.restore: Callable[[], None]
        function = inspect.unwrap(target) if callable(target) else target
        if isinstance(function, types.FunctionType):
            self._mark_function(function, helper)
        else:
            self._mark_builtin(target, owner_attribute)

    def _mark_function(self, function: types.FunctionType, helper: bool) -> None:
        code = function.__code__
        original = types.FunctionType(
            code, function.__globals__, function.__name__, function.__defaults__,
            function.__closure__,
        )  # fmt: skip
        original.__kwdefaults__ = function.__kwdefaults__
        functools.update_wrapper(original, function, updated=())
        del original.__wrapped__
        name = self.name
        # a package's helper is reported by its own name
        reported = f"{function.__module__}.{function.__qualname__}" if helper else name

        def mark(args, kwargs):
            _reached(name, sys._getframe(2), through_torch=True, reported=reported)
            return original(*args, **kwargs)

        had_signature = "__signature__" in function.__dict__
        signature = function.__dict__.get("__signature__")
        if not helper:  # a library function keeps showing its own signature
            try:
                function.__signature__ = inspect.signature(original)
            except (TypeError, ValueError):
                pass
        function.__code__ = _marker_code(code, mark)

        def restore() -> None:
            function.__code__ = code
            if had_signature:
                function.__signature__ = signature
            else:
                function.__dict__.pop("__signature__", None)

        self.restore = restore

    def _mark_builtin(self, builtin, owner_attribute) -> None:
        owner, attribute = owner_attribute
        name = self.name

        def marked(*args, **kwargs):
            _reached(name, sys._getframe(1), through_torch=False)
            return builtin(*args, **kwargs)

        # its name and documentation, but no ``__wrapped__``: that would hand out the original
        functools.update_wrapper(marked, builtin, updated=())
        del marked.__wrapped__

        own = attribute in vars(owner)
        previous = vars(owner).get(attribute)
        setattr(owner, attribute, marked)

        def restore() -> None:
            if own:
                setattr(owner, attribute, previous)
            else:
                delattr(owner, attribute)

        self.restore = restore


@functools.cache
def _package_functions(package_name: str) -> tuple[types.FunctionType, ...]:
    """Every function defined in the package's modules: module functions, methods, and the
    functions its objects hold (a named mistake's code, an exercise's case builder)."""
    package = importlib.import_module(package_name)
    modules = [package]
    for info in pkgutil.walk_packages(package.__path__, package_name + "."):
        modules.append(importlib.import_module(info.name))

    def defined_here(value) -> bool:
        return isinstance(value, types.FunctionType) and _in_package(value.__module__, package_name)

    found: dict[int, types.FunctionType] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, type):
                held = vars(value).values()
            elif isinstance(value, types.FunctionType):
                held = [value]
            else:
                held = getattr(value, "__dict__", {}).values()
            for function in held:
                if defined_here(function):
                    found[id(function)] = function
    return tuple(found.values())


class Markers:
    """The markers installed in this process, by dotted name (a package name stands for all its
    functions); ``install`` is idempotent, ``remove`` puts back what ``install`` changed."""

    def __init__(self):
        self._marked: dict[str, list[_Marked]] = {}
        self._builtins: dict[int, str] = {}  # id of an original built-in -> its dotted name
        self._methods: dict[tuple[type, str], str] = {}

    def install(self, dotted_names: Iterable[str]) -> list[str]:
        """Mark each name not marked yet; returns the names newly marked."""
        added = []
        for dotted_name in dotted_names:
            if dotted_name in self._marked:
                continue
            self._marked[dotted_name] = self._mark(dotted_name)
            added.append(dotted_name)
        return added

    def _mark(self, dotted_name: str) -> list[_Marked]:
        target = resolve(dotted_name)
        if isinstance(target, types.ModuleType) and hasattr(target, "__path__"):
            return [
                _Marked(dotted_name, function, None, helper=True)
                for function in _package_functions(dotted_name)
            ]
        function = inspect.unwrap(target) if callable(target) else target
        if not isinstance(function, types.FunctionType):
            if hasattr(target, "__objclass__"):  # a method descriptor, e.g. torch.Tensor.softmax
                self._methods[(target.__objclass__, target.__name__)] = dotted_name
            else:
                self._builtins[id(target)] = dotted_name
        return [_Marked(dotted_name, target, _owner_and_attribute(dotted_name))]

    def remove(self, dotted_names: Iterable[str]) -> None:
        for dotted_name in dotted_names:
            for marked in reversed(self._marked.pop(dotted_name, [])):
                marked.restore()

    def builtin_name(self, builtin) -> str | None:
        """The dotted name of a marked built-in or tensor method, called through its original."""
        name = self._builtins.get(id(builtin))
        owner = getattr(builtin, "__self__", None)
        if name is None and owner is not None:
            for (owner_class, method_name), dotted in self._methods.items():
                if isinstance(owner, owner_class) and builtin.__name__ == method_name:
                    return dotted
        return name


MARKERS = Markers()


def install_markers(dotted_names: Iterable[str]) -> None:
    """Mark these names for the rest of the process (the grader's child, after its setup)."""
    MARKERS.install(dotted_names)


class ShortcutWatch:
    """Context manager recording which forbidden callables the learner's code reached."""

    def __init__(self, dotted_names: Iterable[str]):
        self.names = tuple(dotted_names)
        self.used: list[str] = []
        self._installed: list[str] = []
        self._previous_profile = None
        self._previous_thread_profile = None

    def _profile(self, frame, event, arg) -> None:
        if event == "c_call":
            name = MARKERS.builtin_name(arg)
            if name is not None:
                _reached(name, frame, through_torch=False)

    def __enter__(self) -> ShortcutWatch:
        global _window
        self._installed = MARKERS.install(self.names)
        _window = _Window(self.names)
        self._previous_profile = sys.getprofile()
        self._previous_thread_profile = threading.getprofile()
        sys.setprofile(self._profile)
        threading.setprofile(self._profile)
        return self

    def __exit__(self, *exc) -> None:
        global _window
        sys.setprofile(self._previous_profile)
        threading.setprofile(self._previous_thread_profile)
        window, _window = _window, None
        self.used = list(window.used) if window is not None else []
        MARKERS.remove(self._installed)
