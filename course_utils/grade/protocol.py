"""The parent's side of the child protocol: read events, check each against the protocol.

The parent first sends the job (setup and cells, no hidden inputs). A child reports ``ready`` after
setup, then for every item ``start``, its ``cell_error`` or ``cases_wanted`` (answered with that
item's cases, and only then) and one ``result``/``case_error`` per case in order, and ``done``;
finally ``finished``. Anything else, out of
order, or a child that dies or stalls raises :class:`ChildFailure` naming what happened.
"""

from __future__ import annotations

import time

from course_utils.feedback import codec
from course_utils.grade.results import ExerciseRun
from course_utils.grade.sandbox import ChannelReader, ChannelTimeout, describe_exit


class ChildFailure(Exception):
    """The child stopped before finishing: ``status`` and ``reason`` for the blamed exercise."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ChildRun:
    """Drives one child through its items, validating every message against the protocol."""

    def __init__(
        self,
        child: ChannelReader,
        items: list[dict],
        settings,
        job: dict | None = None,
        budget_end: float = float("inf"),
    ):
        self.child = child
        self.budget_end = budget_end  # the notebook's whole budget (all its children) ends here
        self.cell_error_seen = False  # for the item running now, in this child
        self.items = items
        self.settings = settings
        self.job = job  # sent first; None when the child already has it (protocol unit tests)
        self.cases_sent = False  # for the item running now
        self.position = 0  # index of the next item to start
        self.current: dict | None = None  # the item running now
        self.next_case = 0
        self.ready = False
        self.seccomp_problem: str | None = None
        self.deadline = 0.0

    def _event(self, deadline: float) -> dict:
        try:
            event = self.child.read_event(deadline)
        except ChannelTimeout:
            raise ChildFailure("timeout", "") from None
        except codec.ProtocolError as error:
            raise ChildFailure(
                "error",
                f"the submission garbled the grader's result channel ({error})",
            ) from None
        if event is None:
            returncode = self.child.wait()
            status, reason = describe_exit(returncode, self.child.exact_status)
            raise ChildFailure(status, reason)
        return event

    def _violation(self, what: str) -> ChildFailure:
        return ChildFailure(
            "error", f"the submission interfered with the grader's result channel ({what})"
        )

    def run(self, outcomes: dict[str, ExerciseRun]) -> None:
        """Process events until ``finished``; raises ChildFailure when the child fails."""
        now = time.monotonic()
        budget_end = now + self.settings.startup_timeout + self.settings.timeout * len(self.items)
        budget_end = min(budget_end, self.budget_end)
        self.deadline = min(now + self.settings.startup_timeout, budget_end)
        if self.job is not None:
            self._send(self.job)
        while True:
            event = self._event(min(self.deadline, budget_end))
            if not self.ready:
                self._expect_ready(event)
            elif self._handle(event, outcomes):
                return

    def _expect_ready(self, event: dict) -> None:
        kind = event["event"]
        if kind == "setup_error":
            raise ChildFailure(
                "grader_error",
                "the released setup cell failed in the child: "
                f"{event.get('type')}: {str(event.get('message'))[:300]}",
            )
        if kind != "ready":
            raise self._violation(f"expected 'ready', got {kind!r:.40}")
        self.ready = True
        if event.get("seccomp") is not True:
            self.seccomp_problem = str(event.get("seccomp_error"))[:300]

    def _handle(self, event: dict, outcomes: dict[str, ExerciseRun]) -> bool:
        """One event after 'ready'; True once the child reported 'finished'."""
        kind = event["event"]
        if kind == "start":
            self._start(event)
            return False
        if kind == "finished":
            if self.current is not None or self.position != len(self.items):
                raise self._violation("'finished' before every exercise ran")
            return True
        item = self.current
        if item is None or event.get("exercise") != item["exercise"]:
            raise self._violation(f"{kind!r:.40} outside the exercise that is running")
        outcome = outcomes.setdefault(item["exercise"], ExerciseRun())
        if kind == "done":
            finished_cases = self.next_case == len(item["cases"])
            if not item["define_only"] and outcome.cell_error is None and not finished_cases:
                raise self._violation("'done' before every case ran")
            self.current = None
        elif kind == "cell_error":
            if item["define_only"] and not item.get("added"):
                raise self._violation("'cell_error' for a cell that only defines names")
            if self.cell_error_seen or self.next_case or self.cases_sent:
                raise self._violation("unexpected 'cell_error'")
            self.cell_error_seen = True
            if outcome.cell_error is None:  # a cell re-run by a later child keeps its first error
                outcome.cell_error = _error_fields(event)
        elif kind == "cases_wanted":
            if item["define_only"] or self.cases_sent or outcome.cell_error is not None:
                raise self._violation("'cases_wanted' where no cases are due")
            self.cases_sent = True
            self._send(item["cases"])
        elif kind in ("result", "case_error"):
            self._case_event(kind, event, item, outcome)
        else:
            raise self._violation(f"unknown event {kind!r:.40}")
        return False

    def _start(self, event: dict) -> None:
        if self.current is not None or self.position >= len(self.items):
            raise self._violation("unexpected 'start'")
        item = self.items[self.position]
        if event.get("exercise") != item["exercise"]:
            raise self._violation("'start' of the wrong exercise")
        self.current, self.next_case, self.cases_sent = item, 0, False
        self.cell_error_seen = False
        self.position += 1
        self.deadline = time.monotonic() + self.settings.timeout

    def _send(self, message: object) -> None:
        try:
            self.child.send_line(message, self.deadline)
        except ChannelTimeout:
            raise ChildFailure("timeout", "") from None

    def _case_event(self, kind: str, event: dict, item: dict, outcome: ExerciseRun) -> None:
        if item["define_only"]:
            raise self._violation(f"{kind!r:.40} for a cell that only defines names")
        if not self.cases_sent:
            raise self._violation(f"{kind!r:.40} before the cases were sent")
        if outcome.cell_error is not None or event.get("case") != self.next_case:
            raise self._violation("case results out of order")
        if self.next_case >= len(item["cases"]):
            raise self._violation("more case results than cases")
        if kind == "result":
            try:
                outcome.outputs[self.next_case] = codec.decode_output(event.get("output"))
            except codec.ProtocolError as error:
                raise self._violation(str(error)) from None
        else:
            outcome.case_errors[self.next_case] = _error_fields(event)
        self.next_case += 1


def _error_fields(event: dict) -> dict:
    """Keep only well-typed, short fields of an error event."""
    fields = {}
    for name, limit in (("type", 80), ("message", 500), ("code", 200)):
        value = event.get(name)
        fields[name] = value[:limit] if isinstance(value, str) else ""
    line = event.get("line")
    fields["line"] = line if isinstance(line, int) and not isinstance(line, bool) else None
    return fields
