"""Stand-in: ``course_utils.timing`` moved to ``course_utils.helpers.timing``.

Kept so that ``from course_utils.timing import ...`` keep working: importing this
module gives the moved module itself (the same object, so a change made to one is seen through the other).
"""

import sys

from course_utils.helpers import timing as _moved

sys.modules[__name__] = _moved
