"""course_utils: the tested library behind the attention course notebooks."""

__version__ = "0.1.0"
