"""``edgecnn sweep``: which recipe variant, precision and runtime is the most accurate one that fits a
latency budget, measured on the user's own device.

Read top to bottom:

1. **The grid.** ``--vary KEY=V1,V2`` words make the variants (their product); each variant times each
   precision times each target is a candidate. Every value is checked against the recipe schema before
   anything runs, and every error is reported at once.
2. **Latency first.** Latency does not depend on the weights, so each variant is written as a run folder
   with random weights (``SWEEP/latency/<variant>``), exported fp32 and PTQ INT8 for each target, and timed
   on the device with the usual ``edgecnn run`` stages (export, bench). A QAT artifact is the same INT8
   graph as the PTQ one of its backend (the same quantizer, with learned instead of calibrated ranges), so
   a QAT candidate's probe latency is its backend's PTQ probe. A candidate whose latency interval lies
   entirely above the budget is dropped; a variant with no candidate left is never trained.
3. **Training.** Each remaining variant is a normal ``edgecnn run`` folder (``SWEEP/<variant>``): train,
   QAT for the backends still needed, export only the candidates still in the race, bench them on the
   device. Run the same command again after an interruption: every stage resumes or is skipped.
4. **The answer.** ``SWEEP/sweep.json``: every candidate (accuracy through its runtime with a Wilson 95%
   interval, latency of the trained artifact with its interval), the Pareto front and the recommendation:
   the most accurate candidate whose latency interval's upper end is within budget; candidates whose
   accuracy intervals overlap the best one's count as tied, and the fastest of them wins.

The package: ``grid.py`` (the grid and its checks), ``phases.py`` (``sweep``: the latency and training
phases), ``choice.py`` (candidates, Pareto front, recommendation), ``printing.py`` (tables and lines).
"""

from edgecnn.sweep.choice import latency_interval, recommend
from edgecnn.sweep.grid import PROBES, REPORT, SWEEP, Grid, Variant, make_grid, split_values
from edgecnn.sweep.phases import sweep
from edgecnn.sweep.printing import _recommendation_line

__all__ = ["PROBES", "REPORT", "SWEEP", "Grid", "Variant", "latency_interval", "make_grid", "recommend",
           "split_values", "sweep", "_recommendation_line"]
