"""The PyTorch eager reference of ``edgecnn bench --eager RUN``: the run's fp32 model, timed like an artifact.

It speaks the device runner's protocol (``runner.serve``), so the host drives
it exactly like the runtimes, in its own process:

    python -m edgecnn.bench.eager --run RUN --threads N --batch B [--device cpu|cuda] [--profile]

The model is the run's best checkpoint, in fp32 and eval mode, called under
``torch.inference_mode`` with ``torch.set_num_threads(threads)``; its inputs
are what a full-band artifact of the run takes (``models.deployable``: the
image, plus the presence mask for band-aware models), random as in the runner.
On CUDA each call ends with ``torch.cuda.synchronize()``, so the time covers
the kernels and not just their launch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgecnn.bench import runner


def open_eager(run: Path, threads: int, batch: int, device: str) -> runner.Loaded:
    """The run's PyTorch model ready to call (see the module docstring).

    Raises:
        runner.RunnerError: no CUDA device for ``device="cuda"``.
        UserError: not a run folder, no checkpoint, damaged checkpoint (from ``load_trained``).
    """
    import torch

    from edgecnn.models.deployable import deployable
    from edgecnn.train.run import load_trained

    if device == "cuda" and not torch.cuda.is_available():
        raise runner.RunnerError("--device cuda: no CUDA GPU is visible to PyTorch here; bench the eager "
                                 "model on the CPU (--device local)")
    imported = runner.rss_mb(peak=False)
    torch.set_num_threads(threads)
    recipe, model, _, _ = load_trained(run)
    graph = deployable(model, recipe.data.bands, recipe.data.image_size, None)
    spec = [{"name": n, "shape": list(t.shape)} for n, t in zip(graph.input_names, graph.example)]
    arrays = runner.make_inputs({"inputs": spec}, batch)
    dev = torch.device(device)
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:  # MACs per image, for GMAC/s
        graph.module.eval()(*graph.example)
    macs = int(counter.get_total_flops() // 2)
    module = graph.module.to(dev).eval()
    inputs = [torch.from_numpy(a).to(dev) for a in arrays]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    @torch.inference_mode()
    def call():
        module(*inputs)
        sync()

    def profile(n: int) -> dict:
        return profile_torch(call, n, dev.type == "cuda")

    if dev.type == "cuda":
        note = f"PyTorch eager fp32 on {torch.cuda.get_device_name(dev)}, synchronized after each call"
    else:
        note = f"PyTorch eager fp32, {torch.get_num_threads()} threads, inference_mode"
    loaded = runner.Loaded(call, profile, "torch", torch.__version__, note, [list(a.shape) for a in arrays],
                           import_rss_mb=imported)
    loaded.macs = macs
    return loaded


def profile_torch(call, n: int, cuda: bool) -> dict:
    """``torch.profiler``: self time per aten op, per call (CUDA time on a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(runner.PROFILE_WARMUP):
        call()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(n):
            call()
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    ms = {e.key: getattr(e, attr) / 1000 / n for e in prof.key_averages() if getattr(e, attr) > 0}
    counts = {e.key: max(1, e.count // n) for e in prof.key_averages()}
    return {"top_ops": runner.top_ops(ms, counts), "delegated_share": None, "source": "torch profiler",
            "profiled_calls": n, "ops_ms": round(sum(ms.values()), 4)}


def describe(device: str) -> dict:
    """The runner's device description; on CUDA the GPU leads it (the CPU only feeds it)."""
    info = runner.device_info()
    if device == "cuda":
        import torch

        gpu = torch.cuda.get_device_name(0)
        info.update(gpu=gpu, device_desc=f"{gpu} (CUDA {torch.version.cuda}); host {info['device_desc']}")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PyTorch eager reference for edgecnn bench (runner protocol)")
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    out, inp = runner.protocol_streams()
    try:
        model = open_eager(args.run, args.threads, args.batch, args.device)
    except Exception as e:  # UserError, RunnerError or anything torch raises: one line for the host
        runner.send(out, {"ok": False, "error": f"eager model of {args.run}: {runner.first_line(e)}"})
        return 2
    return runner.serve(model, args.profile, out, inp, {"macs": getattr(model, "macs", None)},
                        describe=lambda: describe(args.device))


if __name__ == "__main__":
    sys.exit(main())
