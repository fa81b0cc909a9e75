"""Accuracy-versus-cost reports from the files the other stages write.

``collect.py`` finds and reads run folders, artifact sidecars and bench JSON;
``rows.py`` joins them into flat rows (one per model x target x precision x
device); ``tables.py`` turns rows into the paper's columns; ``plots.py`` draws
(matplotlib, imported only there); ``html.py`` writes the self-contained page;
``sweep.py`` reads a sweep folder as runs plus its plot; ``console.py``
prints the headline; ``build.py`` chains them and writes every file
atomically. No torch import anywhere here.

    from edgecnn.report import build
    result = build([Path("runs/quickstart"), Path("bench.json")], Path("reports/quickstart"))
    result["files"], result["headline"]
"""

from edgecnn.report.build import build

__all__ = ["build"]
