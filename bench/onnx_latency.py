"""ONNX (onnxruntime, CPU) against eager PyTorch: inference latency of an exported selfsup model.

Exports RUN with ``selfsup export --format onnx`` (which checks the outputs against PyTorch), then
times the same module both ways on batches of the run's own data: eager PyTorch (eval mode,
``torch.inference_mode``) and an onnxruntime ``InferenceSession`` with default options, same thread
count. Each figure is the median of ``--repeats`` timed calls after ``--warmup`` untimed ones, per
batch size (eager first, then onnxruntime). Prints one Markdown table.

    .venv/bin/python bench/onnx_latency.py runs/finetune-digits-simclr-digits --batches 1 32 256
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import machine  # bench/machine.py

import selfsup
from selfsup.exporting import Traced, example_batch, run_onnx


def timed(call, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32, 256])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(f"machine: {machine()}; onnxruntime {onnxruntime.__version__}\n")
    with tempfile.TemporaryDirectory() as tmp:
        folder = selfsup.export(args.run, format="onnx", out=Path(tmp) / "onnx")
        model = selfsup.load(args.run)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        print("| batch | PyTorch eager (ms) | onnxruntime (ms) | speed-up | max abs diff |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for size in args.batches:
            batch = example_batch(model, size=size)
            keys = list(batch)
            module = Traced(model, keys).eval()
            feeds = {k: v.numpy() for k, v in batch.items() if k in {i.name for i in session.get_inputs()}}

            def eager():
                with torch.inference_mode():
                    return module(*(batch[k] for k in keys))

            def onnx():
                return session.run(None, feeds)

            eager_s = timed(eager, args.warmup, args.repeats)
            onnx_s = timed(onnx, args.warmup, args.repeats)
            expected = eager()
            expected = expected if isinstance(expected, tuple) else (expected,)
            diff = max(float((torch.as_tensor(g) - e).abs().max()) for g, e in zip(run_onnx(folder / "model.onnx",
                                                                                            batch), expected))
            n = len(next(iter(batch.values())))
            print(f"| {n} | {eager_s * 1e3:.2f} | {onnx_s * 1e3:.2f} | {eager_s / onnx_s:.2f}x | {diff:.2g} |",
                  flush=True)


if __name__ == "__main__":
    main()
