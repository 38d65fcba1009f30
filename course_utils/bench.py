"""Stand-in: ``course_utils.bench`` moved to ``course_utils.benchmark.bench``.

Kept so that ``from course_utils.bench import ...`` and ``python -m course_utils.bench`` keep working: importing this
module gives the moved module itself (the same object, so a change made to one is seen through the other).
"""

import sys

from course_utils.benchmark import bench as _moved

if __name__ == "__main__":
    sys.exit(_moved.main())
sys.modules[__name__] = _moved
