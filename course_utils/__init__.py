"""course_utils: the tested library behind the attention course notebooks.

Its folders are its layers; each may import only the layers listed under it
(``tests/test_import_graph.py`` checks this):

* ``helpers/`` — argument checks, timing, the Adam loop, seeds, device and CPU kernel sets: nothing below;
* the lessons, at the top level (``softmax.py`` … ``flash.py`` …, ``seq2seq/``, ``pretrained/``):
  the reference code the notebooks teach and import — helpers;
* ``display/`` — figures and explorers — lessons, helpers;
* ``benchmark/`` — ``course-bench``, and the seed-range report of the quoted claims — lessons, helpers;
* ``feedback/`` — the exercise framework and ``run_case`` — lessons, helpers;
* ``exercises/`` — one spec module per notebook — feedback, lessons, helpers;
* ``checks.py`` — ``check()`` in the notebooks — exercises, feedback;
* ``tooling/`` — release, record, the claims report, progress, course folders, install cell — helpers;
* ``grade/`` — ``course-grade`` — feedback, exercises, tooling, helpers.

A few modules at the top level are stand-ins for modules that moved into a folder (``plots.py``,
``widgets.py``, ``addressing_explorer.py``, ``timing.py``, ``bench.py``, ``progress.py``,
``release.py``, ``runtime.py``, ``record.py``): notebooks and ``python -m`` keep their old names.
"""

__version__ = "0.1.0"
