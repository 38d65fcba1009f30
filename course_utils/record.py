"""Stand-in: ``course_utils.record`` moved to ``course_utils.tooling.record``.

Kept so that ``python -m course_utils.record`` keeps working: importing this module gives the moved module itself.
"""

import sys

from course_utils.tooling import record as _moved

if __name__ == "__main__":
    sys.exit(_moved.main())
sys.modules[__name__] = _moved
