"""The course autograder: ``course-grade SUBMISSIONS_DIR --out grades.csv`` (see ``cli``).

* ``submission`` reads the released notebook (setup cell, exercises, points) and a submission
  (only its solution cells, by nbgrader grade_id);
* ``sandbox`` starts a child process under resource limits (and bubblewrap when available);
  ``child`` is what runs inside it; ``seccomp`` is the filter it installs on itself;
* ``codec`` moves inputs and outputs as plain JSON arrays (no pickle);
* ``hidden`` holds the hidden tests, one module per notebook; the parent computes the expected
  values and ``runner`` judges, restarting the child when a submission kills it;
* ``report`` writes the CSV, JSON, per-student markdown feedback and the summary table.

This package's ``__init__`` imports nothing: the sandboxed child imports ``course_utils.grade.child``
and must not pull in the grader's side.
"""
