"""The course autograder: ``course-grade SUBMISSIONS_DIR --out grades.csv`` (see ``cli``).

* ``submission`` reads the released notebook (setup cell, exercises, points) and a submission
  (its solution cells, by nbgrader grade_id, and the code cells the learner added);
* ``sandbox`` starts a child process under resource limits (and bubblewrap when available);
  ``child`` is what runs inside it; ``seccomp`` is the filter it installs on itself;
* ``course_utils.feedback`` (the layer ``check()`` shares) moves inputs and outputs as plain JSON
  (``codec``, no pickle), runs each case in the child (``run_case``) and words every message;
* ``cases`` draws the hidden cases from the exercise specs (``course_utils.exercises``) with the
  run's seed and computes the expected values in the parent; ``runner`` drives the children
  (restarting one when a submission kills it), ``protocol`` checks what they report and
  ``judging`` turns it into rows;
* ``report`` writes the CSV, JSON, per-student markdown feedback and the summary table;
* ``shards`` picks the students of ``--shard K/N`` and joins the parts (``course-grade merge``).

This package's ``__init__`` imports nothing: the sandboxed child imports ``course_utils.grade.child``
and must not pull in the grader's side.

Who may import it: nothing in ``course_utils`` but ``grade`` itself and the thin ``__main__`` stand-ins;
it imports ``course_utils.feedback``, ``course_utils.exercises`` and the tooling (where the course's
folders are), never the reverse.
"""
