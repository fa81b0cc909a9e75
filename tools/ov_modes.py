"""Does an OpenVINO model run at one speed on this machine? Compile it several times in one process and time each.

    python tools/ov_modes.py MODEL.xml [--compiles 8] [--calls 300] [--threads 2]

Prints the median latency (ms) of each compilation's calls. On the 2-core AMD EPYC VM (Zen 3) the
quickstart's OpenVINO INT8 model on two threads showed two speeds, 0.84-0.87 and 1.00-1.05 ms, each lasting
seconds to minutes, and one speed on one thread (docs/precision.md): a state no estimator over one bench's
rounds can remove. Run it a few times, in separate processes, before trusting a two-thread comparison.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import openvino as ov


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--compiles", type=int, default=8)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": args.threads}  # as edgecnn bench sets it
    medians = []
    for _ in range(args.compiles):
        compiled = core.compile_model(args.model, "CPU", config)
        request = compiled.create_infer_request()
        inputs = [np.random.rand(*[d.get_length() for d in port.get_partial_shape()]).astype(np.float32)
                  for port in compiled.inputs]
        for _ in range(50):  # warm-up
            request.infer(inputs)
        times = []
        for _ in range(args.calls):
            t = time.perf_counter()
            request.infer(inputs)
            times.append(time.perf_counter() - t)
        medians.append(statistics.median(times) * 1000)
    print(f"{args.model}, {args.threads} threads, {args.calls} calls per compilation: "
          + " ".join(f"{m:.3f}" for m in medians) + " ms")


if __name__ == "__main__":
    main()
