"""Stand-in: ``course_utils.bench`` moved to ``course_utils.benchmark.bench`` (its command line to
``course_utils.benchmark.cli``).

Kept so that ``from course_utils.bench import ...`` and ``python -m course_utils.bench`` keep working:
importing this module gives the moved module itself (the same object, so a change made to one is seen
through the other); running it runs ``course-bench``.
"""

import sys

from course_utils.benchmark import bench as _moved

if __name__ == "__main__":
    from course_utils.benchmark import cli

    sys.exit(cli.main())
sys.modules[__name__] = _moved
