"""The naive vs tiled vs SDPA benchmark: ``course-bench`` (``cli``), cases in fresh processes (``bench``),
peak-memory measurement (``peak_memory``), tables and ratios (``bench_report``), the figure (``figure``).

Who may import it: notebooks, tests and the ``course_utils.bench`` stand-in. It imports the lessons
(the attention it times) and ``course_utils.helpers``; never display, feedback or grade.
"""
