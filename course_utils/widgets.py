"""Stand-in: ``course_utils.widgets`` moved to ``course_utils.display.widgets``.

Kept so that ``from course_utils.widgets import ...`` keep working: importing this
module gives the moved module itself (the same object, so a change made to one is seen through the other).
"""

import sys

from course_utils.display import widgets as _moved

sys.modules[__name__] = _moved
