"""Stand-in: ``course_utils.progress`` moved to ``course_utils.tooling.progress``.

Kept so that ``from course_utils.progress import ...`` and ``python -m course_utils.progress`` keep working: importing this
module gives the moved module itself (the same object, so a change made to one is seen through the other).
"""

import sys

from course_utils.tooling import progress as _moved

if __name__ == "__main__":
    sys.exit(_moved.main())
sys.modules[__name__] = _moved
