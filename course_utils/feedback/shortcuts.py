"""Noticing a forbidden shortcut: the learner's code calling what the exercise asks them to write.

``with ShortcutWatch(["torch.softmax", "course_utils.softmax.softmax"]) as watch: fn(...)`` records,
in ``watch.used``, each forbidden callable that code OUTSIDE torch and course_utils called directly
(the learner's function, or a helper of theirs). A course function the exercise allows may still use
torch.softmax inside; only a direct call from the learner's own code counts.

It works with ``sys.setprofile``: Python functions are recognised by their code object (a module's
``forward`` too, reached through ``nn.Module.__call__``), built-in functions by identity, and tensor
methods (``x.softmax(-1)``) by their class and name. ``run_case`` (``feedback/run.py``) puts it around
every call of the learner's function, in ``check()`` and in the grader's child; a determined cheater can
switch a profiler off, which the grader's threat model (docs/grading.md) accepts: the point is to
tell a learner that a shortcut does not count, before the grade does.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable


def resolve(dotted_name: str):
    """``"torch.nn.functional.softmax"`` -> the object; the longest importable module prefix wins."""
    parts = dotted_name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute)
        return target
    raise ValueError(f"cannot resolve forbidden call {dotted_name!r}")


def _package_dir(name: str) -> str:
    module = sys.modules.get(name) or importlib.import_module(name)
    return os.path.dirname(os.path.abspath(module.__file__)) + os.sep


class ShortcutWatch:
    """Context manager recording which forbidden callables the learner's code called directly."""

    def __init__(self, dotted_names: Iterable[str]):
        self.used: list[str] = []
        self._codes: dict[object, str] = {}  # Python functions: code object -> name
        self._builtins: dict[int, str] = {}  # built-in functions: id -> name
        self._methods: dict[tuple[type, str], str] = {}  # tensor methods: (class, name) -> name
        for dotted_name in dotted_names:
            target = resolve(dotted_name)
            code = getattr(target, "__code__", None)
            if code is not None:
                self._codes[code] = dotted_name
            elif hasattr(target, "__objclass__"):  # a method descriptor, e.g. torch.Tensor.softmax
                self._methods[(target.__objclass__, target.__name__)] = dotted_name
            else:
                self._builtins[id(target)] = dotted_name
        self._torch_dir = _package_dir("torch")
        self._library_dirs = (self._torch_dir, _package_dir("course_utils"))
        self._previous = None

    def _is_learner_frame(self, frame) -> bool:
        return frame is not None and not os.path.abspath(frame.f_code.co_filename).startswith(
            self._library_dirs
        )

    def _record(self, name: str | None, caller) -> None:
        if name is not None and name not in self.used and self._is_learner_frame(caller):
            self.used.append(name)

    def _caller_outside_torch(self, frame):
        """The frame that called ``frame``, looking through torch's own frames: ``block(x)`` reaches
        ``forward`` through ``nn.Module.__call__``, and the call is the learner's all the same."""
        caller = frame.f_back
        while caller is not None and os.path.abspath(caller.f_code.co_filename).startswith(
            self._torch_dir
        ):
            caller = caller.f_back
        return caller

    def _profile(self, frame, event, arg) -> None:
        if event == "call":
            name = self._codes.get(frame.f_code)
            if name is not None:
                self._record(name, self._caller_outside_torch(frame))
        elif event == "c_call":
            name = self._builtins.get(id(arg))
            owner = getattr(arg, "__self__", None)
            if name is None and owner is not None:
                for (owner_class, method_name), dotted in self._methods.items():
                    if isinstance(owner, owner_class) and arg.__name__ == method_name:
                        name = dotted
                        break
            self._record(name, frame)

    def __enter__(self) -> ShortcutWatch:
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(self._previous)
