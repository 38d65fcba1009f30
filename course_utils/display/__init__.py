"""What a notebook shows: figures (``plots``), slider explorers (``widgets``, with the static stand-ins
of ``static_widgets`` where ipywidgets cannot run) and the NTM addressing explorer.

Who may import it: notebooks and tests only; the lessons never do (they compute, the notebook shows).
It imports the lessons and ``course_utils.helpers``.
"""
