"""Stand-in: ``course_utils.addressing_explorer`` moved to ``course_utils.display.addressing_explorer``.

Kept so that ``from course_utils.addressing_explorer import ...`` keep working: importing this
module gives the moved module itself (the same object, so a change made to one is seen through the other).
"""

import sys

from course_utils.display import addressing_explorer as _moved

sys.modules[__name__] = _moved
