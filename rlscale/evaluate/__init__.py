"""Offline policy evaluation: replay held-out windows through the simulator for any policies.

``python -m rlscale.evaluate`` (or ``rlscale evaluate``) runs policies x windows x seeds, tunes
the baselines' knobs on training windows first (``--tune``), and writes ``results.csv``,
``results.json``, a Markdown table and PNG plots.
"""
