"""Course tooling, not lessons: solutions -> notebooks (``release``), the learner's table of exercises
(``progress``), where the course folders are (``course_folders``), the Colab install cell
(``install_cell``), and the refusal of a class's submissions by the tools that run notebooks without a
sandbox (``untrusted``, whose ``student_folders`` ``course-grade`` shares).

Who may import it: ``course_utils.grade`` and the thin stand-ins at the old paths. It imports only
itself and ``course_utils.helpers``; never the lessons, feedback or grade.
"""
