"""nbgrader's configuration for this course, read by `nbgrader ...` run from the repository root.

nbgrader wants its course folder laid out as source/<assignment>/<notebook>.ipynb. Here that folder is
nbgrader/ (ignored by git) and each notebook of solutions/ is one assignment of the same name:
`make nbgrader-source` links solutions/NN_name.ipynb to nbgrader/source/NN_name/NN_name.ipynb, so the
source never goes stale. Then, with .venv/bin on PATH (nbgrader calls `alembic` from there):

    nbgrader generate_assignment 01_soft_weights --create      # -> nbgrader/release/01_soft_weights/
    nbgrader autograde 01_soft_weights --create                 # nbgrader/submitted/<student>/01_soft_weights/

nbgrader grades the visible check cells only; the course's own grader (course-grade) adds the hidden cases,
refuses forbidden shortcuts and sandboxes the submissions (README: "nbgrader instead").
"""

import os

c = get_config()  # noqa: F821 - traitlets defines it when it runs this file

c.CourseDirectory.root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nbgrader")

# nbgrader stops a cell after 30 s; the training cells of notebooks 02 and 03 take up to about a minute on a
# 2-core CPU, longer on a loaded grading machine.
c.Execute.timeout = 300
