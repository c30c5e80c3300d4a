"""GPU check: every CUDA path selfsup has, run on a CUDA machine, with figures to record.

    python bench/gpu_check.py                     # on a CUDA machine: all checks, a table at the end
    python bench/gpu_check.py --only mfu          # one check: quickstarts, mfu, ddp, fsdp
    python bench/gpu_check.py --cpu-smoke         # the script's own logic on CPU, tiny settings (no figures)

1. **quickstarts**: each modality's quickstart recipe with ``device = "cuda"``, bf16 autocast,
   ``torch.compile`` and fused AdamW, for ``--steps`` steps: completes, loss finite, samples/s.
2. **mfu**: the CLM task on a GPT-2-style decoder of ``--clm-layers`` x ``--clm-dim`` (default 14 x
   768: 105M parameters with the 8k BPE vocabulary) at context ``--context``; model FLOPs
   utilisation = tokens/s x FLOPs per token / the device's peak dense bf16 FLOP/s. FLOPs per token
   (PaLM, Chowdhery et al. 2022, appendix B): ``6 N + 12 L d T`` with N the non-embedding
   parameters plus the output projection, L layers, d width, T context (forward + backward; the
   attention term counts the full T x T product, as PaLM does). Peak: ``--peak-tflops``, else the
   vendor's dense bf16 figure for the device name (table below).
3. **ddp** / **fsdp**: ``--nproc`` = every visible GPU, nccl: the toy-sized ``simclr-digits`` run
   with 1 process and with N processes (``train.strategy`` ddp, then fsdp) at the same global batch;
   the loss curves must agree to bf16 rounding. Skipped with one GPU.

Each check prints one line; the table at the end goes into docs/benchmarks.md with the machine line.
Tests never run this file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import flop_parameters  # noqa: E402
from flops import flops_per_token as token_flops  # noqa: E402
from machine import machine  # noqa: E402

#: Dense bf16 peak FLOP/s by device-name fragment (vendor data sheets, without sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100": 989.0,
               "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 125.0, "RTX 4090": 165.0}

QUICKSTARTS = ["simclr-digits", "clm-quickstart", "wav2vec2-quickstart", "clip-digits-text", "cvrl-moving-mnist"]


def selfsup(*args: str, env: dict[str, str] | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfsup", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def train_records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("kind") == "train"]


def run_recipe(recipe: str, out: Path, device: str, steps: int, *extra: str, nproc: int = 1) -> dict:
    sets = [f"output_dir={out}", f"train.device={device}", f"train.max_steps={steps}", "train.epochs=",
            "train.log_every=5", "train.checkpoint_every=0", "train.tensorboard=false", "train.warmup_steps=0",
            "train.health.enabled=false", *extra]
    args = ["train", recipe, "--no-progress", *(x for s in sets for x in ("--set", s))]
    if nproc > 1:
        args += ["--nproc", str(nproc)]
    res = selfsup(*args)
    records = train_records(out)
    tail = records[len(records) // 2:] or records  # after compilation and warm-up
    speed = sum(r.get("samples_per_s", 0.0) for r in tail) / max(len(tail), 1)
    return {"ok": res.returncode == 0 and bool(records) and all(math.isfinite(r["loss"]) for r in records),
            "samples_per_s": speed, "losses": {r["step"]: r["loss"] for r in records},
            "error": "" if res.returncode == 0 else res.stderr.strip().splitlines()[-1:] or ["?"]}


def check_quickstarts(tmp: Path, device: str, steps: int, fast: list[str]) -> list[str]:
    lines = []
    for recipe in QUICKSTARTS:
        result = run_recipe(recipe, tmp / f"qs-{recipe}", device, steps, *fast)
        lines.append(f"| quickstart `{recipe}` | {'ok' if result['ok'] else 'FAILED ' + str(result['error'])} | "
                     f"{result['samples_per_s']:.0f} samples/s |")
    return lines


def check_mfu(tmp: Path, device: str, steps: int, fast: list[str], layers: int, dim: int, context: int,
              batch: int, peak_tflops: float | None) -> list[str]:
    vocab = 8192  # bpe-8k
    heads = max(1, dim // 64)
    result = run_recipe(
        "clm-quickstart", tmp / "mfu", device, steps, *fast,
        f"backbones.decoder.options.layers={layers}", f"backbones.decoder.options.dim={dim}",
        f"backbones.decoder.options.heads={heads}", f"backbones.decoder.options.context={context}",
        f"data.train.options.window={context}", f"data.val.options.window={context}", f"train.batch_size={batch}",
        "evaluators={}",
    )
    n = flop_parameters(layers, dim, vocab)  # blocks (attention 4d^2 + MLP 8d^2) + the output projection
    flops_per_token = token_flops(layers, dim, context, vocab)  # bench/flops.py: 6 N + 12 L d T
    tokens_per_s = result["samples_per_s"] * context
    if peak_tflops is None and device == "cuda":
        name = torch.cuda.get_device_name()
        peak_tflops = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    mfu = tokens_per_s * flops_per_token / (peak_tflops * 1e12) if peak_tflops else float("nan")
    status = "ok" if result["ok"] else "FAILED " + str(result["error"])
    return [f"| CLM MFU, {n / 1e6:.0f}M parameters, context {context}, batch {batch} | {status} | "
            f"{tokens_per_s:,.0f} tokens/s, {flops_per_token * tokens_per_s / 1e12:.1f} TFLOP/s, "
            f"MFU {mfu:.1%} of {peak_tflops or '?'} TFLOP/s |"]


def check_parallel(tmp: Path, device: str, steps: int, strategy: str, nproc: int, fast: list[str]) -> list[str]:
    if nproc < 2:
        return [f"| {strategy} at {nproc} device | skipped: needs 2 or more devices | |"]
    common = [*fast, f"train.strategy={strategy}", "train.batch_size=256"]
    one = run_recipe("simclr-digits", tmp / f"{strategy}-1", device, steps, *common)
    many = run_recipe("simclr-digits", tmp / f"{strategy}-{nproc}", device, steps, *common, nproc=nproc)
    shared = sorted(set(one["losses"]) & set(many["losses"]))
    worst = max((abs(one["losses"][s] - many["losses"][s]) / abs(one["losses"][s]) for s in shared), default=math.inf)
    ok = one["ok"] and many["ok"] and worst < 2e-2  # bf16: 8 mantissa bits, summed in another order
    return [f"| {strategy}, nccl, {nproc} processes vs 1 | {'ok' if ok else 'FAILED'} | largest relative loss "
            f"difference {worst:.1e} over {len(shared)} logged steps; {many['samples_per_s']:.0f} vs "
            f"{one['samples_per_s']:.0f} samples/s |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=["quickstarts", "mfu", "ddp", "fsdp"],
                        default=["quickstarts", "mfu", "ddp", "fsdp"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--clm-layers", type=int, default=14)
    parser.add_argument("--clm-dim", type=int, default=768)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny settings on CPU: checks this script only")
    args = parser.parse_args()

    if args.cpu_smoke:
        device, nproc = "cpu", 2
        args.steps, args.clm_layers, args.clm_dim, args.context, args.batch = 10, 2, 64, 64, 8
        fast = ["train.precision=bf16"]
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: this script checks the GPU paths (--cpu-smoke checks the script itself)")
        device, nproc = "cuda", torch.cuda.device_count()
        fast = ["train.precision=bf16", "train.optimizer_options.fused=true"]
        if not args.no_compile:
            fast.append("train.compile=true")
    print(machine())
    if device == "cuda":
        print(f"{nproc} x {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}")
    lines = ["| check | result | figures |", "| --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "quickstarts" in args.only:
            lines += check_quickstarts(tmp, device, args.steps, fast)
        if "mfu" in args.only:
            lines += check_mfu(tmp, device, args.steps, fast, args.clm_layers, args.clm_dim, args.context,
                               args.batch, args.peak_tflops)
        for strategy in ("ddp", "fsdp"):
            if strategy in args.only:
                lines += check_parallel(tmp, device, args.steps, strategy, nproc, fast)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
