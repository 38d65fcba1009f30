"""Small helpers every layer may use: argument checks (``validation``), timing claims (``timing``),
the shared Adam loop (``adam_loop``).

Who may import it: everything in ``course_utils``. It imports nothing of ``course_utils`` but itself.
"""
