"""Time the full training step of any model family: gdrae.train.train_step, the trainer's own step.

Data is random and already on the device; warm-up steps are excluded; on
CUDA the clock is synchronised only around the timed loop. Prints steps/s,
peak memory, process CPU time per step (all threads: on a busy machine,
compare it at --threads 1) and a last line ``ms_per_step=<number>``. On CPU it
also prints the step's work (torch's flop counter over loss and backward) and
the rate it achieved, beside the rate of lone 64-, 128- and 256-row
1024 x 1024 float32 products at the same thread count and the ratio of the
two (``ratio_to_64row_product``): the distance to what the machine's matrix
products allow.
``--breakdown`` profiles as many steps again (after the timing) and prints
where their time goes, in ms per step: convolutions with a spatial kernel
(the part only faster convolution kernels can shrink), 1x1 mixings and
matrix products, layout work (shuffles, copies, concatenation), and the rest.

    python bench/train_step.py --config configs/shapes2d.yaml --device cpu --steps 6
    python bench/train_step.py --config configs/shapes2d.yaml --steps 3 --breakdown
    python bench/train_step.py --config configs/baselines/factor_vae-shapes2d-synth-small.yaml --threads 2
"""
from __future__ import annotations

import argparse
import resource
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from cli.common import keep_freed_memory
from gdrae.config import load_config
from gdrae.device import DEVICES
from gdrae.config import SPECTRAL_ROUTES
from gdrae.models import build_model
from gdrae.train import make_optimizers, train_step

MATRIX_OPS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::matmul", "aten::linear"}
LAYOUT_OPS = {"aten::pixel_shuffle", "aten::pixel_unshuffle", "aten::cat", "aten::copy_", "aten::clone",
              "aten::_to_copy", "aten::constant_pad_nd"}
CATEGORIES = ("conv_kxk", "mix_1x1_and_matmul", "layout", "other")


def op_category(name: str, input_shapes: list) -> str | None:
    """The breakdown line of one profiled operator, or None for events that are not aten operators.

    A convolution (forward, transposed or backward) is "conv_kxk" when its
    weight, the last 4-d input, has a kernel bigger than 1x1.
    """
    if not name.startswith("aten::"):
        return None
    if "conv" in name:
        weights = [s for s in input_shapes if len(s) == 4]
        if weights and weights[-1][2] * weights[-1][3] > 1:
            return "conv_kxk"
        return "mix_1x1_and_matmul"
    if name in MATRIX_OPS:
        return "mix_1x1_and_matmul"
    return "layout" if name in LAYOUT_OPS else "other"


def time_breakdown(events, steps: int, device: str) -> dict[str, float]:
    """Self time of the profiled aten operators by :func:`op_category`, ms per step (the kernels' own time on CUDA)."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for e in events:
        category = op_category(e.key, e.input_shapes)
        if category is not None:
            us = e.self_device_time_total if device == "cuda" else e.self_cpu_time_total
            totals[category] += us / 1000 / steps
    return totals


def step_flops(step) -> float:
    """Floating-point operations of one call of ``step`` (torch's flop counter: matrix products and
    convolutions, forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def product_rate(rows: int, width: int = 1024, repeats: int = 30) -> float:
    """GFLOP/s of a lone (rows x width) @ (width x width) float32 product on the CPU, best of three rounds."""
    a, w = torch.randn(rows, width), torch.randn(width, width)
    for _ in range(3):
        a @ w
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ w
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * rows * width * width / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--device", choices=DEVICES[1:], default="cpu")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="torch.compile(model.loss_terms), as train.compile")
    parser.add_argument("--compile-mode", default="default", choices=["default", "reduce-overhead", "max-autotune"],
                        help="torch.compile mode; reduce-overhead replays the step as CUDA graphs (CUDA only)")
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    parser.add_argument("--spectral-method", default=None, choices=SPECTRAL_ROUTES,
                        help="route of the power iteration, as --set train.spectral_route=... "
                             "(gdrae.models.jacobian.spectral_estimate)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave malloc's defaults (gdrae-train sets keep_freed_memory on CPU)")
    parser.add_argument("--breakdown", action="store_true",
                        help="after timing, profile --steps more steps and print ms per step by kind of operator")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cpu" and not args.system_malloc:
        keep_freed_memory()

    route = [f"train.spectral_route={args.spectral_method}"] if args.spectral_method else []
    cfg = load_config(args.config, [*args.set, *route])
    batch = args.batch_size or cfg.data.batch_size
    device = torch.device(args.device)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg).to(device)
    optimizers = make_optimizers(model, cfg)
    m = cfg.model
    if m.kind == "image":
        x = (torch.rand(batch, m.channels, m.image_size, m.image_size, device=device) > 0.5).float()
    else:
        x = torch.rand(batch, 2, device=device) + 1

    loss_terms = torch.compile(model.loss_terms, mode=args.compile_mode) if args.compile else model.loss_terms
    graphs = args.compile and args.compile_mode == "reduce-overhead"

    def step() -> None:
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()  # last step's graph outputs may be overwritten
        train_step(model, optimizers, loss_terms, x, 0)

    compile_start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    warmup_s = time.perf_counter() - compile_start
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    cpu_ms = 1000 * (time.process_time() - cpu_start) / args.steps  # all threads; robust to a busy machine
    ms = 1000 * elapsed / args.steps
    if device.type == "cuda":
        peak = f"peak_cuda_mem_mib={torch.cuda.max_memory_allocated() / 2**20:.0f}"
    else:
        peak = f"peak_rss_mib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
    print(f"config={args.config} family={model.family} device={args.device} batch={batch} "
          f"threads={torch.get_num_threads()} compile={args.compile and args.compile_mode} "
          f"spectral={cfg.train.spectral_route} warmup_s={warmup_s:.1f} steps={args.steps} steps_per_s={1000 / ms:.2f} cpu_ms_per_step={cpu_ms:.1f} {peak}")
    if device.type == "cpu":
        gflop = step_flops(step) / 1e9
        rates = {rows: product_rate(rows) for rows in (64, 128, 256)}
        shown = " ".join(f"matmul_{rows}x1024x1024_gflop_per_s={rate:.0f}" for rows, rate in rates.items())
        achieved = gflop * 1000 / ms
        print(f"gflop_per_step={gflop:.2f} step_gflop_per_s={achieved:.0f} {shown} "
              f"ratio_to_64row_product={achieved / rates[64]:.2f}")
    if args.breakdown:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities, record_shapes=True) as prof:
            for _ in range(args.steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
        totals = time_breakdown(prof.key_averages(group_by_input_shape=True), args.steps, device.type)
        print(" ".join(f"{k}_ms={v:.1f}" for k, v in totals.items()) +
              f" profiled_total_ms={sum(totals.values()):.1f} (profiled steps, operator self time)")
    print(f"ms_per_step={ms:.1f}")


if __name__ == "__main__":
    main()
