"""Stand-in: ``course_utils.runtime`` moved to ``course_utils.helpers.runtime``.

Kept so that ``from course_utils.runtime import seed_everything, device`` in every notebook (and a learner's
copy) keeps working: importing this module gives the moved module itself.
"""

import sys

from course_utils.helpers import runtime as _moved

sys.modules[__name__] = _moved
