"""Visible checks behind ``check(name, fn)``, one module per notebook.

Each module registers its checks with ``course_utils.checks.register``; ``check()`` imports every
module in this package, so adding a notebook's checks needs no edit here.
"""
