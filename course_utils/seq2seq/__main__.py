"""``python -m course_utils.seq2seq``: see ``course_utils.seq2seq.cli``."""

import sys

from course_utils.seq2seq.cli import main

if __name__ == "__main__":
    sys.exit(main())
