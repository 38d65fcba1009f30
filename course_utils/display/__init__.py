"""What a notebook shows: figures (``plots``), slider explorers (``widgets``, with the static stand-ins
of ``static_widgets`` where ipywidgets cannot run) and the NTM addressing explorer.

Who may import it: notebooks, tests and the stand-ins at the old paths (``course_utils.plots`` ...);
the lessons never do (they compute, the notebook shows).
It imports the lessons and ``course_utils.helpers``.
"""
