"""CPU efficiency: a GPT-2-style training step's achieved FLOP/s against this CPU's measured bf16 matmul peak.

    .venv/bin/python bench/cpu_efficiency.py                  # peak, 3 timed runs, 1 profiled run
    .venv/bin/python bench/cpu_efficiency.py --fused          # with train.optimizer_options.fused = true

1. **Peak**: ``torch.matmul`` of square bf16 matrices (2048, 3072, 4096) with
   ``torch.get_num_threads()`` threads, each size timed 3 times after one untimed call; the peak is
   the best ``2 n^3 / seconds`` over all of them. fp32 the same way, for reference.
2. **Model**: the shipped ``clm-quickstart`` recipe (the CLM task on the ``transformer`` backbone,
   bf16 autocast, AdamW, grad clipping at 1.0) through the public ``selfsup.train`` with ``--set``
   overrides: GPT-2 family, ``--layers`` x ``--dim`` (default 4 x 512, the ``small`` preset: 16.9M
   parameters with the 8k BPE vocabulary), context and window ``--context`` (256), batch ``--batch``
   windows; evaluators, health checks, TensorBoard and intermediate checkpoints off. A step is the
   loop's own: forward, backward, clipping, optimizer and scheduler step, its per-step log.
3. **Timing**: a selfsup plugin timestamps every step through ``on_step_end`` (``log_every = 1``);
   the first ``--warmup`` steps are dropped, the next ``--steps`` timed. ``--repeats`` runs (each a
   new ``selfsup.train``), the best kept. Before each run the script waits (up to ``--max-wait``
   s) for other processes to go quiet, measures from ``/proc/stat`` how many cores they kept busy
   during the timed steps, and redoes a run above ``--max-other`` cores (at most ``--retries``
   times). The MLflow plugin, if installed, is turned off (``SELFSUP_MLFLOW=0``): it would log
   every step. tokens/s = batch x context / seconds per step; achieved FLOP/s = tokens/s x FLOPs per
   token (bench/flops.py, PaLM's ``6 N + 12 L d T``, the definition bench/gpu_check.py uses);
   efficiency = achieved / bf16 peak.
4. **Profile**: one more run with ``torch.profiler`` (CPU activity) over ``--profile-steps`` steps
   after the warm-up; the top ``--top`` ops by self CPU time are printed (``--shapes``: by op and
   input shapes).

Bounded: about 2 minutes on an idle 2-core machine (peak 10 s, 4 runs of about 25 s), at most
about 6 with every wait and retry.

The load average is printed with every figure: the machine is shared, and other jobs slow it.
Tests never run this file.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import flop_parameters, flops_per_token  # noqa: E402
from machine import machine  # noqa: E402

import selfsup  # noqa: E402
from selfsup.plugins import get_plugin_manager  # noqa: E402

VOCAB = 8192  # bpe-8k, the clm-quickstart tokenizer (its embedding rows)


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def busy_cpu_seconds() -> float:
    """CPU seconds all processes on the machine spent busy so far (/proc/stat), or NaN."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return sum(int(v) for i, v in enumerate(fields[1:9]) if i != 3) / os.sysconf("SC_CLK_TCK")  # all but idle
    except (OSError, IndexError, ValueError):
        return math.nan


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def wait_for_idle(max_wait: float, quiet: float = 3.0) -> float:
    """Wait (at most ``max_wait`` s) until other processes kept under 5% of the machine busy for
    ``quiet`` consecutive seconds; returns the seconds waited."""
    start, calm, cores = time.perf_counter(), 0.0, os.cpu_count() or 1
    while calm < quiet and time.perf_counter() - start < max_wait:
        busy, t = busy_cpu_seconds(), time.perf_counter()
        time.sleep(0.5)
        other = (busy_cpu_seconds() - busy) / (time.perf_counter() - t)
        if math.isnan(other):
            break
        calm = calm + 0.5 if other < 0.05 * cores else 0.0
    return time.perf_counter() - start


def matmul_peak(dtype: torch.dtype, sizes: tuple[int, ...] = (2048, 3072, 4096), repeats: int = 3) -> float:
    """Best TFLOP/s of ``a @ b`` (square, ``dtype``) over ``sizes`` x ``repeats``, after one untimed call each."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        torch.matmul(a, b)
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e12)
        del a, b
    return best


class StepClock:
    """Wall time, the machine's busy CPU seconds and this process's CPU seconds at every logged step
    (``log_every = 1``: every step), and an optional profiler started after step ``profile_from``
    and stopped after ``profile_steps`` more."""

    def __init__(self, profile_from: int | None = None, profile_steps: int = 0, shapes: bool = False) -> None:
        self.shapes = shapes
        self.marks: dict[int, tuple[float, float, float]] = {}
        self.parameters = 0
        self.profile_from, self.profile_steps = profile_from, profile_steps
        self.profiler: torch.profiler.profile | None = None

    def mark(self, step: int) -> None:
        self.marks[step] = (time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds())

    @selfsup.hookimpl
    def on_train_start(self, run) -> None:
        self.mark(run.step)
        self.parameters = run.parameters

    @selfsup.hookimpl
    def on_step_end(self, run, step, metrics) -> None:
        self.mark(step)
        if self.profile_from is None:
            return
        if step == self.profile_from:
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                   record_shapes=self.shapes)
            self.profiler.start()
        elif self.profiler is not None and step == self.profile_from + self.profile_steps:
            self.profiler.stop()
            self.profile_from = None

    def seconds_per_step(self, warmup: int, steps: int) -> float:
        return (self.marks[warmup + steps][0] - self.marks[warmup][0]) / steps

    def other_cores(self, warmup: int, steps: int) -> float:
        """Cores other processes kept busy on average over the timed steps (should be ~0)."""
        (w0, b0, o0), (w1, b1, o1) = self.marks[warmup], self.marks[warmup + steps]
        return max(0.0, (b1 - b0) - (o1 - o0)) / max(w1 - w0, 1e-9)


def overrides(args: argparse.Namespace, out: Path, steps: int) -> list[str]:
    o = "backbones.decoder.options"
    sets = [
        f"output_dir={out}", "train.device=cpu", f"train.max_steps={steps}", "train.epochs=", "train.warmup_steps=0",
        "train.log_every=1", "train.checkpoint_every=0", "train.tensorboard=false", "train.health.enabled=false",
        f"train.batch_size={args.batch}", "evaluators={}", f"train.precision={args.precision}",
        f"{o}.size=small", f"{o}.layers={args.layers}", f"{o}.dim={args.dim}", f"{o}.heads={max(1, args.dim // 64)}",
        f"{o}.context={args.context}", f"data.train.options.window={args.context}",
        f"data.val.options.window={args.context}",
    ]
    if args.compile:
        sets.append("train.compile=true")
    if args.fused:
        sets.append("train.optimizer_options.fused=true")
    return sets


CLOCK = StepClock()


def run_once(args: argparse.Namespace, steps: int, profile_from: int | None = None,
             profile_steps: int = 0) -> StepClock:
    """One ``selfsup.train`` of ``steps`` steps, timed by :data:`CLOCK` (registered once, reset here)."""
    CLOCK.__init__(profile_from, profile_steps, args.shapes)
    with tempfile.TemporaryDirectory() as tmp:
        run = selfsup.train("clm-quickstart", overrides(args, Path(tmp) / "run", steps))
        if run.status != "completed":
            raise SystemExit(f"the run ended {run.status!r}")
    return CLOCK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=15, help="ops printed from the profile")
    parser.add_argument("--shapes", action="store_true", help="profile: group the ops by input shapes")
    parser.add_argument("--compile", action="store_true", help="train.compile = true")
    parser.add_argument("--fused", action="store_true", help="train.optimizer_options.fused = true")
    parser.add_argument("--max-wait", type=float, default=30,
                        help="before each run, wait up to this many seconds for other processes to go quiet")
    parser.add_argument("--max-other", type=float, default=0.1,
                        help="a run during which other processes kept more cores busy than this is redone")
    parser.add_argument("--retries", type=int, default=1, help="redone at most this many times")
    parser.add_argument("--no-peak", action="store_true", help="skip the matmul peak (give --peak-tflops)")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()

    os.environ.setdefault("SELFSUP_MLFLOW", "0")  # no tracking plugin logging every step
    get_plugin_manager().register(CLOCK, "bench-cpu-efficiency-clock")
    print(machine())
    threads = torch.get_num_threads()
    if args.peak_tflops is None and not args.no_peak:
        fp32 = matmul_peak(torch.float32)
        print(f"fp32 matmul peak: {fp32:.3f} TFLOP/s ({load()})", flush=True)
        args.peak_tflops = matmul_peak(torch.bfloat16)
        print(f"bf16 matmul peak: {args.peak_tflops:.3f} TFLOP/s ({load()})", flush=True)
    print(f"peak method: best 2 n^3 / s of torch.matmul on square n x n matrices, n in 2048, 3072, 4096, "
          f"3 timed calls each after one untimed, {threads} threads")

    n = flop_parameters(args.layers, args.dim, VOCAB)
    per_token = flops_per_token(args.layers, args.dim, args.context, VOCAB)
    tokens = args.batch * args.context
    total = args.warmup + args.steps
    best = math.inf
    parameters = 0
    for i in range(args.repeats):
        for attempt in range(args.retries + 1):
            waited = wait_for_idle(args.max_wait)
            clock = run_once(args, total)
            seconds = clock.seconds_per_step(args.warmup, args.steps)
            other = clock.other_cores(args.warmup, args.steps)
            parameters = clock.parameters
            print(f"run {i + 1}{'abcdefgh'[attempt] if attempt else ''}: {seconds * 1000:.0f} ms/step, "
                  f"{tokens / seconds:,.0f} tokens/s ({load()}; other processes kept {other:.2f} cores busy "
                  f"meanwhile; waited {waited:.0f} s for an idle machine)", flush=True)
            if other <= args.max_other or attempt == args.retries:
                break
        best = min(best, seconds)
    config = (f"GPT-2 {args.layers} x {args.dim}, {max(1, args.dim // 64)} heads, context {args.context}, "
              f"vocab {VOCAB}, N = {n / 1e6:.1f}M in 6N + 12LdT, batch {args.batch} x {args.context} tokens, "
              f"{args.precision}{', compiled' if args.compile else ''}{', fused AdamW' if args.fused else ''}")
    print(config)
    if args.repeats:
        achieved = tokens / best * per_token / 1e12
        print(f"{parameters / 1e6:.1f}M parameters; FLOPs per token {per_token / 1e6:.1f}M; best of {args.repeats}: "
              f"{best * 1000:.0f} ms/step, {tokens / best:,.0f} tokens/s, {achieved:.3f} TFLOP/s", end="")
        if args.peak_tflops:
            print(f" = {achieved / args.peak_tflops:.1%} of the bf16 peak {args.peak_tflops:.3f} TFLOP/s", end="")
        print(f" ({load()})", flush=True)

    if args.profile_steps:
        clock = run_once(args, args.warmup + args.profile_steps + 1, args.warmup, args.profile_steps)
        assert clock.profiler is not None
        print(f"\nprofile: {args.profile_steps} steps after {args.warmup} warm-up steps, top {args.top} ops by self "
              f"CPU time ({load()})")
        averages = clock.profiler.key_averages(group_by_input_shape=args.shapes)
        print(averages.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=60,
                             max_shapes_column_width=60))


if __name__ == "__main__":
    main()
