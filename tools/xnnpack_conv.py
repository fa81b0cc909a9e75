"""How fast is one 3x3 convolution in ExecuTorch's XNNPACK, ONNX Runtime and PyTorch on this CPU?

    python tools/xnnpack_conv.py [--threads 1]

Four 3x3 convolutions 128 -> 128 channels at 56x56 (the size of cnn_attn's second
and third blocks), fp32 and INT8 (PT2E + XNNPACKQuantizer, per-channel) through
ExecuTorch, fp32 through ONNX Runtime and PyTorch eager, and one fp32 GEMM
through ExecuTorch for comparison. Prints GMAC/s. It tells whether a slow
ExecuTorch model is the graph's fault or the kernels' on this CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn


def timed(fn, n: int = 10) -> float:
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower
    from executorch.extension.pybindings import portable_lib
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    import onnxruntime as ort

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    portable_lib._unsafe_reset_threadpool(args.threads)
    tmp = Path(tempfile.mkdtemp())

    def et(module: nn.Module, x: torch.Tensor, name: str):
        prog = to_edge_transform_and_lower(torch.export.export(module, (x,)),
                                           partitioner=[XnnpackPartitioner()]).to_executorch()
        (tmp / name).write_bytes(prog.buffer)
        m = portable_lib._load_for_executorch(str(tmp / name))
        return lambda: m.forward([x])

    convs = nn.Sequential(*[nn.Sequential(nn.Conv2d(128, 128, 3, padding=1), nn.ReLU()) for _ in range(4)]).eval()
    x = torch.randn(1, 128, 56, 56)
    macs = 4 * 56 * 56 * 128 * 128 * 9

    q = XNNPACKQuantizer()
    q.set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(convs, (x,)).module(), q)
    prepared(x)
    int8 = convert_pt2e(prepared)

    torch.onnx.export(convs, (x,), str(tmp / "c.onnx"), dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(tmp / "c.onnx"), so)
    feed = {sess.get_inputs()[0].name: x.numpy()}

    gemm = nn.Linear(1024, 1024, bias=False).eval()
    a = torch.randn(256, 1024)

    with torch.inference_mode():
        rows = [
            ("ExecuTorch XNNPACK conv fp32", et(convs, x, "f.pte"), macs),
            ("ExecuTorch XNNPACK conv int8", et(int8, x, "q.pte"), macs),
            ("ONNX Runtime conv fp32", lambda: sess.run(None, feed), macs),
            ("PyTorch eager conv fp32", lambda: convs(x), macs),
            ("ExecuTorch XNNPACK gemm fp32", et(gemm, a, "g.pte"), 256 * 1024 * 1024),
        ]
        for name, fn, m in rows:
            s = timed(fn)
            print(f"{name:32s} {s * 1e3:8.2f} ms  {m / s / 1e9:6.1f} GMAC/s  ({args.threads} threads)")


if __name__ == "__main__":
    main()
