"""The course autograder: ``course-grade SUBMISSIONS_DIR --out grades.csv`` (see ``cli``).

* ``submission`` reads the released notebook (setup cell, exercises, points) and a submission
  (its solution cells, by nbgrader grade_id, and the code cells the learner added);
* ``sandbox`` starts a child process under resource limits (and bubblewrap when available);
  ``child`` is what runs inside it; ``seccomp`` is the filter it installs on itself;
* ``codec`` moves inputs and outputs as plain JSON arrays (no pickle);
* ``cases`` draws the hidden cases from the exercise specs (``course_utils.exercises``) with the
  run's seed and computes the expected values in the parent; ``runner`` drives the children
  (restarting one when a submission kills it), ``protocol`` checks what they report and
  ``judging`` turns it into rows;
* ``report`` writes the CSV, JSON, per-student markdown feedback and the summary table.

This package's ``__init__`` imports nothing: the sandboxed child imports ``course_utils.grade.child``
and must not pull in the grader's side.
"""
