"""Stand-in: ``course_utils.release`` moved to ``course_utils.tooling.release``.

Kept so that ``from course_utils.release import ...`` and ``python -m course_utils.release`` keep working: importing this
module gives the moved module itself (the same object, so a change made to one is seen through the other).
"""

import sys

from course_utils.tooling import release as _moved

if __name__ == "__main__":
    sys.exit(_moved.main())
sys.modules[__name__] = _moved
