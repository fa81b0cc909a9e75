"""Record per-round bench samples as the fixture of tests/test_precision.py (the coverage simulation).

    python tools/record_rounds.py ART... --out tests/data/bench_rounds.json [--rounds 12] [--min-time 0.3]

Each artifact is timed as `edgecnn bench --rounds N` times it (interleaved rounds of batched samples); every
round keeps at most KEEP samples, evenly spaced, so the file stays small.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

from edgecnn.bench import api

KEEP = 60


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--min-time", type=float, default=0.3)
    args = ap.parse_args()
    captured: dict[str, list] = {}
    fill = api._fill_latencies

    def keep(job, req):  # the rounds as measured, before they become a row's statistics
        captured[job.row["name"]] = [r[:: max(1, len(r) // KEEP)][:KEEP] for r in job.rounds]
        fill(job, req)

    api._fill_latencies = keep
    rows = api.bench(api.BenchRequest(tuple(args.artifacts), rounds=args.rounds, min_time=args.min_time))
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    doc = {"recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "cpu": cpu, "cores": os.cpu_count(), "load_average": os.getloadavg(),
           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True).stdout.strip(),
           "unit": "ms per call (means of calls_per_sample calls)",
           "calls_per_sample": {r["name"]: r["calls_per_sample"] for r in rows},
           "rows": {k: [[round(x, 5) for x in r] for r in v] for k, v in captured.items()}}
    args.out.write_text(json.dumps(doc) + "\n")
    print(f"wrote {args.out}: {', '.join(f'{k} ({len(v)} rounds)' for k, v in captured.items())}")


if __name__ == "__main__":
    main()
