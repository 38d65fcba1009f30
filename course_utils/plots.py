"""Stand-in: ``course_utils.plots`` moved to ``course_utils.display.plots``.

Kept so that ``from course_utils.plots import ...`` keep working: importing this
module gives the moved module itself (the same object, so a change made to one is seen through the other).
"""

import sys

from course_utils.display import plots as _moved

sys.modules[__name__] = _moved
