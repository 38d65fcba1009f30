"""Feedback on a learner's function: the layer ``check()`` and the grader share.

* ``spec.py`` — an :class:`~course_utils.feedback.spec.Exercise`: signature, reference, case families,
  judge, named mistakes, hints, forbidden calls, the module classes it takes as input;
* ``judge.py`` — how a returned value is compared with the expected one;
* ``shared_mistakes.py`` — mistakes several exercises share;
* ``codec.py`` — the plain-JSON form of every value that reaches or leaves the learner's function;
* ``shortcuts.py`` — noticing a forbidden call;
* ``run.py`` — ``run_case``: one call of the learner's function (runs in the grader's sandbox too);
* ``prepared.py`` — expected values and mistakes computed on the trusted side, and judging;
* ``messages.py`` — every sentence a learner reads about a failed case, written once.

Who may import it: ``course_utils.exercises`` (the specs), ``course_utils.checks`` (``check()``) and
``course_utils.grade``. It imports only the lessons (a shared mistake is built from a reference) and
``course_utils.helpers``; never ``exercises``, ``grade``, ``checks``, display or tooling.
"""
