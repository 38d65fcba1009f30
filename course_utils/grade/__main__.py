"""``python -m course_utils.grade`` is ``course-grade``."""

import sys

from course_utils.grade.cli import main

sys.exit(main())
