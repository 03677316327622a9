"""The GPU checks of one session in one prepared run: step speed, a first image result, bfloat16 curves, Sector2D.

Started by bench/gpu_suite.sh, which installs the carried wheels first; its
header gives the exact device call. The steps run in priority order, each
as its own process under its own budget (BUDGETS below), cut to what is left
of the suite's:

  1  step speed, bench/train_step_suite.py: eager for shapes2d, shapes3d and
     sector2dunif with --breakdown, then CUDA graphs for sector2dunif and
     shapes2d, then torch.compile for the three, each with a cold compile cache
  4  gdrae-data prepare shapes2d-synth (in the background from the start);
     gdrae-train configs/shapes2d.yaml on it (data.name=shapes2d-synth) until
     its budget ends, then SIGINT: final pictures, diagnostics, checkpoint;
     gdrae-eval of that checkpoint (histogram family, MIG, SAP, geometry),
     then DCI in the background from the stored code table; bench/eval.py's
     encoding throughput
  3  bench/dtype_curves.py on sector2dunif: float32, then bfloat16, each
     stopped by SIGINT at its budget, then their comparison
  5  bench/reproduce.py sector2dunif --steps 100000, only when the time left
     covers its estimate (from the eager sector2dunif step of 1)

Every figure is printed as one ``name=value`` line and appended to
OUT/figures.txt at once. A step that fails prints ``<step>_failed=<reason>``
(``<step>_skipped=<reason>`` when it did not start) and the rest still runs.
OUT receives at most 8 files, checked at the end: suite.log (the wrapper's
copy of this output), figures.txt, logs.tar.gz (every log, the metrics JSON,
train.log and all pictures), reconstruction.png, traversal.png, mi.png,
dtype_curves.png and reproduce_figures.png.

    OUT=/tmp/out bash bench/gpu_suite.sh              # on the GPU machine
    OUT=/tmp/out bash bench/gpu_suite.sh --rehearse   # the same steps on CPU, tiny: a few minutes
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# Budgets in seconds of wall clock. On the GPU (one H200, 16 cores) the suite ends within SUITE_S, about
# 9 minutes, inside the device call's 600 s. Each can be overridden by an environment variable of its name.
BUDGETS = {
    "SUITE_S": 540,        # the whole suite, the wrapper's wheel install included: no step runs past it
    "BUNDLE_S": 15,        # kept at the end for logs.tar.gz and the pictures
    "SETUP_S": 60,         # import check: torch sees the GPU, gdrae and its packages import
    "PREPARE_S": 180,      # gdrae-data prepare shapes2d-synth, in the background (about 40 s on 2 cores)
    "ITEM1_S": 200,        # item 1 ends by this second of the suite; a run that cannot start by then is skipped
    "EAGER_S": 45,         # each eager step-speed run (3): start-up, 2 + 20 steps, 20 profiled steps
    "GRAPHS_S": 100,       # each CUDA-graphs run (sector2dunif, shapes2d): compile, record, 20 steps
    "COMPILE_S": 100,      # each torch.compile run (sector2dunif, shapes2d, shapes3d)
    "AFTER_TRAIN_S": 160,  # kept after item 4's training: its evaluation, the encoding bench, item 3
    "TRAIN_MIN_S": 60,     # item 4's training runs SUITE_S - now - AFTER_TRAIN_S, within these bounds,
    "TRAIN_MAX_S": 300,    # then gets SIGINT (gdrae-train writes pictures, diagnostics, a checkpoint, exits)
    "TRAIN_GRACE_S": 60,   # from that SIGINT to a SIGKILL
    "EVAL_S": 120,         # gdrae-eval histogram,mig,sap,geometry: one encoding pass over 737,280 images
    "DCI_S": 240,          # DCI in the background (CPU, 5 threads) from the stored code table, during the rest
    "ENCODE_S": 60,        # bench/eval.py: encoding throughput
    "DTYPE_RUN_S": 60,     # each of item 3's two runs (2,000 Sector2D steps), then SIGINT
    "DTYPE_CMP_S": 40,     # item 3's comparison: reads both runs, draws curves.png
    "REPRO_EVAL_S": 150,   # item 5's estimate: the evaluations of one run (DCI at its last step)
}
# --rehearse: the same steps on this CPU in a few minutes; compile runs are cut or skipped by their budgets
REHEARSAL_BUDGETS = {
    **BUDGETS, "SUITE_S": 480, "PREPARE_S": 60, "ITEM1_S": 150, "EAGER_S": 60, "GRAPHS_S": 20, "COMPILE_S": 20,
    "AFTER_TRAIN_S": 150, "TRAIN_MIN_S": 20, "TRAIN_MAX_S": 20, "TRAIN_GRACE_S": 90, "DCI_S": 150,
    "DTYPE_RUN_S": 40, "REPRO_EVAL_S": 200,
}
MIN_RUN_S = 10  # a step with less time left than this is skipped
TRAIN_OVERHEAD = 1.5  # item 5's estimate: a training step costs this many bench steps (data, logging, pictures)

STEP_CONFIGS = ("shapes2d", "shapes3d", "sector2dunif")
GRAPHS_CONFIGS = ("sector2dunif", "shapes2d")
COMPILE_CONFIGS = ("sector2dunif", "shapes2d", "shapes3d")
# figures kept from a bench/train_step_suite.py line, besides ms_per_step
STEP_KEYS = ("warmup_s", "steps_per_s", "cpu_ms_per_step", "peak_cuda_mem_mib", "peak_rss_mib", "batch",
             "conv_kxk_ms", "mix_1x1_and_matmul_ms", "layout_ms", "other_ms", "profiled_total_ms")
STEP_LINE = re.compile(r"^(\S+) (\S+) (?:failed: (.*)|ms_per_step=(\S+)\s+\((.*)\))\s*$")
DONE_LINE = re.compile(r" done: step (\d+) of (\d+) in ([0-9.]+) s")
RATE_LINE = re.compile(r" step (\d+) total=.* steps/s=([0-9.eE+-]+)\s*$")
OUT_LIMITS = {"files": 8, "file_bytes": 16 * 2**20, "depth": 2}
OUT_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
DCI_CODE = ("import json, sys, time\n"
            "start = time.perf_counter()\n"
            "from gdrae.evaluate import evaluate_checkpoint\n"
            "r = evaluate_checkpoint(sys.argv[1], ['dci'], cache_dir=sys.argv[2], out=sys.argv[3], device='cpu',\n"
            "                        options={'dci': json.loads(sys.argv[4])}, images=False, progress=False)\n"
            "print(' '.join(f'{k}={v:.4f}' for k, v in r.results.items()))\n"
            "print(f'dci_s={time.perf_counter() - start:.1f}')\n")
SETUP_CODE = ("import sys, numpy, zarr, numcodecs, pydantic, tensorboardX, torch, gdrae\n"
              "print('python_version=' + sys.version.split()[0])\n"
              "print('torch_version=' + torch.__version__)\n"
              "print('cuda_available=' + str(torch.cuda.is_available()))\n"
              "print('gpu=' + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'))\n"
              "print('gdrae_path=' + gdrae.__file__)\n")
PREPARE_CODE = "from cli.data import main; main()"  # gdrae-data without the installed entry point


@dataclass(frozen=True)
class Plan:
    """What differs between the GPU run and its CPU rehearsal, besides the budgets."""

    device: str
    step_steps: int              # timed steps of each step-speed run
    dataset: str                 # item 4's cache
    train_sets: tuple = ()       # extra overrides of item 4's training
    dtype_steps: int = 2000
    dtype_log_every: int = 10
    encode_n: int = 16384        # images of bench/eval.py's cache
    dci: dict = field(default_factory=dict)  # options of the DCI metric (numbers do not depend on n_jobs)
    repro_steps: int = 100000
    repro_evals: int = 5


GPU_PLAN = Plan("cuda", 20, "shapes2d-synth", dci={"n_jobs": 5})
REHEARSAL_PLAN = Plan("cpu", 2, "shapes2d-synth-small", ("train.log_every=2",), dtype_steps=4, dtype_log_every=2,
                      encode_n=2048, dci={"n_jobs": 2, "num_train": 1000, "num_test": 500}, repro_steps=4,
                      repro_evals=1)


# ----------------------------------------------------------------------------- parsing (tested in tests/test_bench.py)


def one_line(value) -> str:
    """A figure's value on one line: whitespace runs become one space, at most 300 characters."""
    return " ".join(str(value).split())[:300]


def parse_step_line(line: str) -> tuple[str, str, dict[str, str] | None, str | None] | None:
    """(config, mode, figures, failure) of one bench/train_step_suite.py line, None for other lines.

    ``figures`` holds ms_per_step and the :data:`STEP_KEYS` present; a
    failed run gives ``figures`` None and its reason.
    """
    match = STEP_LINE.match(line.strip())
    if not match:
        return None
    config, mode, failure, ms, rest = match.groups()
    if failure is not None:
        return config, mode, None, failure
    figures = {"ms_per_step": ms}
    figures.update((k, v) for k, v in re.findall(r"(\w+)=(\S+)", rest) if k in STEP_KEYS)
    return config, mode, figures, None


def train_progress(log_text: str) -> dict[str, str]:
    """Figures of a train.log: steps reached, steps/s at the last loss line, seconds of the run."""
    figures = {}
    for line in log_text.splitlines():
        done, rate = DONE_LINE.search(line), RATE_LINE.search(line)
        if rate:
            figures["steps_reached"], figures["steps_per_s"] = rate.group(1), rate.group(2)
        if done:
            figures["steps_reached"], figures["run_s"] = done.group(1), done.group(3)
    return figures


def name_values(text: str, names: tuple[str, ...] | None = None) -> dict[str, str]:
    """The ``name=value`` lines of a log (the last of each name), those of ``names`` only when given."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z_][\w/]*)=(\S.*)$", line.strip())
        if match and (names is None or match.group(1) in names):
            found[match.group(1)] = match.group(2).strip()
    return found


def last_line(text: str) -> str:
    """The last non-blank line of a log (progress bars' carriage returns count as line ends)."""
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    return lines[-1] if lines else "no output"


def train_budget(left_s: float, after_s: float, low_s: float, high_s: float) -> float:
    """Item 4's training time: what is left once ``after_s`` is kept for later steps, within [low_s, high_s]."""
    return max(low_s, min(high_s, left_s - after_s))


def repro_estimate(steps: int, ms_per_step: float, eval_s: float, runs: int = 2) -> float:
    """Seconds bench/reproduce.py needs: ``runs`` trainings of ``steps`` steps, plus their evaluations."""
    return runs * (steps * ms_per_step / 1000 * TRAIN_OVERHEAD + eval_s)


def out_problems(out: Path, limits: dict = OUT_LIMITS) -> list[str]:
    """Why some file under ``out`` would not come back from the device machine (empty: all come back)."""
    files = sorted(p for p in out.rglob("*") if p.is_file() or p.is_symlink())
    problems = []
    if len(files) > limits["files"]:
        problems.append(f"{len(files)} files, at most {limits['files']} come back")
    for path in files:
        rel = path.relative_to(out)
        if path.is_symlink():
            problems.append(f"{rel}: a link")
        elif path.stat().st_size > limits["file_bytes"]:
            problems.append(f"{rel}: {path.stat().st_size / 2**20:.1f} MiB, over {limits['file_bytes'] / 2**20:.0f}")
        if len(rel.parts) - 1 > limits["depth"]:
            problems.append(f"{rel}: more than {limits['depth']} folders down")
        if not all(OUT_NAME.match(part) for part in rel.parts):
            problems.append(f"{rel}: a name other than letters, digits, '.', '_' and '-'")
    return problems


# ----------------------------------------------------------------------------- running


@dataclass
class Run:
    name: str
    rc: int | None
    timed_out: bool
    seconds: float
    timeout: float
    log: Path

    @property
    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def why(self) -> str:
        if self.timed_out:
            return f"timed out after {self.timeout:.0f} s"
        return f"exit {self.rc}: {last_line(self.text)}"


@dataclass
class Background:
    name: str
    proc: subprocess.Popen | None
    started: float
    log: Path
    file: object = None


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the process group this suite started for ``proc`` (its own session)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_group(proc: subprocess.Popen, timeout: float, stop: int, grace: float) -> tuple[int, bool]:
    """Wait ``timeout`` s; then ``stop``, ``grace`` s more, then SIGKILL. (exit status, timed out)."""
    timed_out = False
    try:
        rc = proc.wait(timeout=max(timeout, 0.1))
    except subprocess.TimeoutExpired:
        timed_out = True
        signal_group(proc, stop)
        try:
            rc = proc.wait(timeout=grace) if grace > 0 and stop != signal.SIGKILL else None
        except subprocess.TimeoutExpired:
            rc = None
        if rc is None:
            signal_group(proc, signal.SIGKILL)
            rc = proc.wait()
    signal_group(proc, signal.SIGKILL)  # what it left behind (compile workers)
    return rc, timed_out


class Suite:
    def __init__(self, out: Path, work: Path, plan: Plan, budgets: dict[str, int], t0: float, rehearse: bool):
        self.out, self.work, self.plan, self.b, self.t0, self.rehearse = out, work, plan, budgets, t0, rehearse
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cache = work / "cache"
        self.figures_path = out / "figures.txt"
        self.sector_ms: float | None = None
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([self.env["PYTHONPATH"]] if self.env.get("PYTHONPATH") else []))
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env["TQDM_DISABLE"] = "1"  # progress bars would fill the logs

    # -- clock and figures

    def now(self) -> float:
        return time.time() - self.t0

    def left(self) -> float:
        """Seconds before the steps must end (the bundle's time kept)."""
        return self.b["SUITE_S"] - self.b["BUNDLE_S"] - self.now()

    def fig(self, name: str, value) -> None:
        line = f"{name}={one_line(value)}"
        print(line, flush=True)
        with open(self.figures_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def note(self, text: str) -> None:
        print(f"# {self.now():5.0f} s  {text}", flush=True)

    def guard(self, name: str, fn, *args) -> None:
        """Run one step; a fault of this driver becomes ``<name>_failed`` and the suite goes on."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the rest must still run
            self.fig(f"{name}_failed", f"suite error: {type(exc).__name__}: {exc}")

    # -- processes

    def _popen(self, name: str, cmd: list[str], env: dict | None, nice: bool) -> tuple[subprocess.Popen | None, Path, object]:
        log = self.logs / f"{name}.log"
        f = open(log, "w", encoding="utf-8")
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        try:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env={**self.env, **(env or {})},
                                    start_new_session=True, preexec_fn=(lambda: os.nice(19)) if nice else None)
        except OSError as exc:
            f.write(f"cannot start: {exc}\n")
            f.close()
            return None, log, None
        return proc, log, f

    def run(self, name: str, cmd: list[str], cap: float, *, stop: int = signal.SIGKILL, grace: float = 0,
            env: dict | None = None, backstop: float = 0) -> Run | None:
        """Run ``cmd`` for at most ``cap`` s (and what is left of the suite); None (and a figure) when skipped.

        ``backstop``: seconds more for a command that keeps ``cap`` itself.
        """
        timeout = min(cap + backstop, self.left())
        if timeout < MIN_RUN_S:
            self.fig(f"{name}_skipped", f"no time left ({max(self.left(), 0):.0f} s of the suite's)")
            return None
        self.note(f"{name}: up to {min(cap, timeout):.0f} s")
        start = time.time()
        proc, log, f = self._popen(name, cmd, env, nice=False)
        if proc is None:
            return Run(name, 127, False, 0.0, timeout, log)
        try:
            rc, timed_out = wait_group(proc, timeout, stop, grace)
        finally:
            f.close()
        return Run(name, rc, timed_out, time.time() - start, timeout, log)

    def start(self, name: str, cmd: list[str], nice: bool = False) -> Background:
        self.note(f"{name}: started in the background")
        proc, log, f = self._popen(name, cmd, None, nice)
        return Background(name, proc, time.time(), log, f)

    def finish(self, bg: Background, cap: float) -> Run:
        """Wait for a background step until ``cap`` s after its start (and no later than the suite allows)."""
        limit = min(cap, time.time() - bg.started + self.left())  # seconds from its start
        if bg.proc is None:
            return Run(bg.name, 127, False, 0.0, limit, bg.log)
        try:
            rc, timed_out = wait_group(bg.proc, bg.started + limit - time.time(), signal.SIGKILL, 0)
        finally:
            bg.file.close()
        return Run(bg.name, rc, timed_out, time.time() - bg.started, limit, bg.log)

    # -- steps

    def setup(self) -> bool:
        run = self.run("setup", [PY, "-c", SETUP_CODE], self.b["SETUP_S"])
        values = name_values(run.text) if run else {}
        for key, value in values.items():
            self.fig(key, value)
        if run is None or not run.ok:
            why = run.why() if run else "no time"
            if "ModuleNotFoundError" in why:
                why += " (were the wheels carried? bash bench/gpu_suite.sh --fetch-wheels here, carry .whl there)"
            self.fig("setup_failed", why)
            return False
        if self.plan.device == "cuda" and values.get("cuda_available") != "True":
            self.fig("setup_failed", "torch sees no CUDA device")
            return False
        if shutil.which("nvidia-smi"):
            smi = self.run("nvidia_smi", ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                                          "--format=csv,noheader"], 20)
            if smi is not None and smi.ok:
                self.fig("nvidia_smi", last_line(smi.text))
        return True

    def item1(self) -> None:
        """Step speed: eager (with the breakdown), CUDA graphs, compile; each run a fresh process and compile cache."""
        deadline = self.b["ITEM1_S"]
        runs = ([(c, "eager", self.b["EAGER_S"]) for c in STEP_CONFIGS]
                + [(c, "cudagraphs", self.b["GRAPHS_S"]) for c in GRAPHS_CONFIGS]
                + [(c, "compile", self.b["COMPILE_S"]) for c in COMPILE_CONFIGS])
        for config, mode, cap in runs:
            self.guard(f"{config}_{mode}", self._step_speed, config, mode, min(cap, deadline - self.now()))

    def _step_speed(self, config: str, mode: str, cap: float) -> None:
        name = f"{config}_{mode}"
        if cap < MIN_RUN_S:
            self.fig(f"{name}_skipped", f"item 1's {self.b['ITEM1_S']} s were spent")
            return
        compile_cache = self.work / "compile" / name
        env = {"TORCHINDUCTOR_CACHE_DIR": str(compile_cache), "TRITON_CACHE_DIR": str(compile_cache / "triton")}
        cmd = [PY, "bench/train_step_suite.py", "--device", self.plan.device, "--configs", config, "--modes", mode,
               "--steps", str(self.plan.step_steps), "--timeout", f"{cap:.0f}"]
        if mode == "eager":
            cmd.append("--breakdown")
        run = self.run(f"step_{name}", cmd, cap, env=env, backstop=15)
        if run is None:
            return
        for line in run.text.splitlines():
            parsed = parse_step_line(line)
            if parsed and parsed[:2] == (config, mode):
                figures, failure = parsed[2], parsed[3]
                if failure is not None:
                    self.fig(f"{name}_failed", failure)
                else:
                    for key, value in figures.items():
                        self.fig(f"{name}_{key}", value)
                    if name == "sector2dunif_eager":
                        self.sector_ms = float(figures["ms_per_step"])
                return
        self.fig(f"{name}_failed", run.why())

    def item4(self, prepare: Background) -> Background | None:
        """The first image result; returns the DCI evaluation running in the background (or None)."""
        b, p = self.b, self.plan
        prep = self.finish(prepare, b["PREPARE_S"])
        if not prep.ok:
            self.fig("prepare_failed", prep.why())
            self.fig("train_skipped", "no cache")
            return None
        took = re.search(r"on disk, ([0-9.]+) s", prep.text)  # gdrae-data's own figure: it ran in the background
        self.fig("prepare_s", took.group(1) if took else f"{prep.seconds:.1f}")
        rows = re.search(r": ([\d,]+) rows of", prep.text)
        if rows:
            self.fig("prepare_rows", rows.group(1).replace(",", ""))

        run_dir = self.work / "shapes2d"
        budget = train_budget(self.left() + b["BUNDLE_S"], b["AFTER_TRAIN_S"], b["TRAIN_MIN_S"], b["TRAIN_MAX_S"])
        self.fig("train_budget_s", f"{budget:.0f}")
        sets = [f"data.name={p.dataset}", f"data.cache_dir={self.cache}", f"train.run_dir={run_dir}",
                f"train.device={p.device}", *p.train_sets]
        cmd = [PY, "-m", "cli.train", "--config", "configs/shapes2d.yaml", *(a for s in sets for a in ("--set", s))]
        run = self.run("train", cmd, budget, stop=signal.SIGINT, grace=b["TRAIN_GRACE_S"])
        ckpt = run_dir / "checkpoints" / "latest.pt"
        log = run_dir / "train.log"
        for key, value in train_progress(log.read_text(encoding="utf-8") if log.exists() else "").items():
            self.fig(f"train_{key}", value)
        if run is None:
            return None
        self.fig("train_wall_s", f"{run.seconds:.1f}")
        if not ckpt.exists() or (run.rc != 0 and not run.timed_out):
            self.fig("train_failed", run.why() if not ckpt.exists() else f"exit {run.rc} after its checkpoint: "
                     + last_line(run.text))
            if not ckpt.exists():
                return None
        if "stopped by a signal" not in (log.read_text(encoding="utf-8") if log.exists() else ""):
            self.fig("train_note", "not stopped by the SIGINT: " + run.why())

        eval_dir = self.work / "eval"
        cmd = [PY, "-m", "cli.eval", "--ckpt", str(ckpt), "--metrics", "histogram,mig,sap,geometry",
               "--cache-dir", str(self.cache), "--out", str(eval_dir), "--device", p.device]
        run = self.run("eval", cmd, b["EVAL_S"])
        dci = None
        if run is not None:
            self.fig("eval_s", f"{run.seconds:.1f}")
            if not run.ok:
                self.fig("eval_failed", run.why())
            self._metrics_figures(eval_dir)
            if (eval_dir / "codes").is_dir():  # DCI reads the stored code table: no second encoding pass
                shutil.copytree(eval_dir / "codes", self.work / "eval_dci" / "codes", dirs_exist_ok=True)
                dci = self.start("eval_dci", [PY, "-c", DCI_CODE, str(ckpt), str(self.cache),
                                              str(self.work / "eval_dci"), json.dumps(p.dci)])
            else:
                self.fig("eval_dci_skipped", "no stored code table")

        cmd = [PY, "bench/eval.py", "--config", "configs/shapes2d.yaml", "--device", p.device, "--n", str(p.encode_n)]
        run = self.run("encode", cmd, b["ENCODE_S"])
        if run is not None:
            values = name_values(run.text, ("encode_images_per_s", "encoding_passes_per_evaluation"))
            for key, value in values.items():
                self.fig(key, value)
            if "encode_images_per_s" not in values:
                self.fig("encode_failed", run.why())
        return dci

    def _metrics_figures(self, eval_dir: Path) -> None:
        """eval_<metric> figures of the newest metrics/step-N.json under ``eval_dir`` (hist20 and hist50 of the
        histogram family; the other bin counts stay in the JSON)."""
        found = sorted((eval_dir / "metrics").glob("step-*.json"), key=lambda p: int(p.stem.split("-")[1]))
        if not found:
            self.fig(f"{eval_dir.name}_failed", "no metrics JSON")
            return
        record = json.loads(found[-1].read_text(encoding="utf-8"))
        self.fig(f"{eval_dir.name}_step", record["step"])
        for key, value in record["metrics"].items():
            if not re.match(r"hist(3|5|10)/", key):
                self.fig(f"eval_{key.replace('/', '_')}", f"{value:.4f}")

    def finish_dci(self, dci: Background | None) -> None:
        if dci is None:
            return
        run = self.finish(dci, self.b["DCI_S"])
        took = name_values(run.text, ("dci_s",))  # its own figure: it ran in the background
        self.fig("eval_dci_s", took.get("dci_s", f"{run.seconds:.1f}"))
        if not run.ok:
            self.fig("eval_dci_failed", run.why())
        self._metrics_figures(self.work / "eval_dci")

    def item3(self) -> None:
        """float32 against bfloat16 on Sector2D: each run stopped at its budget, then compared as far as both got."""
        b, p = self.b, self.plan
        out = self.work / "dtype"
        base = [PY, "bench/dtype_curves.py", "--config", "configs/sector2dunif.yaml", "--steps", str(p.dtype_steps),
                "--log-every", str(p.dtype_log_every), "--out", str(out), "--set", f"train.device={p.device}"]
        for dtype in ("float32", "bfloat16"):
            run = self.run(f"dtype_{dtype}", [*base, "--only", dtype], b["DTYPE_RUN_S"], stop=signal.SIGINT, grace=30)
            if run is None:
                continue
            values = name_values(run.text, (f"steps_{dtype}", f"steps_per_s_{dtype}"))
            for key, value in values.items():
                self.fig(f"dtype_{key}", value)
            if not values:
                self.fig(f"dtype_{dtype}_failed", run.why())
            elif run.timed_out:
                self.fig(f"dtype_{dtype}_note", f"stopped at its budget of {run.timeout:.0f} s")
        if not all((out / d / "train.log").exists() for d in ("float32", "bfloat16")):
            self.fig("dtype_compare_skipped", "a run is missing")
            return
        run = self.run("dtype_compare", base, b["DTYPE_CMP_S"])
        if run is not None:
            gap = name_values(run.text, ("median_rel_gap_total",))
            if gap:
                self.fig("dtype_median_rel_gap_total", gap["median_rel_gap_total"])
            else:
                self.fig("dtype_compare_failed", run.why())

    def item5(self) -> None:
        """The published Sector2D run, when the time left covers its estimate (or REPRO_FORCE=1)."""
        p = self.plan
        if self.sector_ms is None:
            self.fig("reproduce_skipped", "no eager sector2dunif step time from item 1 to size it")
            return
        need = repro_estimate(p.repro_steps, self.sector_ms, self.b["REPRO_EVAL_S"])
        self.fig("reproduce_estimate_s", f"{need:.0f}")
        if need > self.left() and os.environ.get("REPRO_FORCE") != "1":
            self.fig("reproduce_skipped", f"needs about {need:.0f} s (2 runs of {p.repro_steps} steps at "
                     f"{self.sector_ms:g} ms, and their evaluations), {max(self.left(), 0):.0f} s left")
            return
        cmd = [PY, "bench/reproduce.py", "sector2dunif", "--steps", str(p.repro_steps), "--evals", str(p.repro_evals),
               "--out", str(self.work / "reproduce"), "--cache-dir", str(self.cache), "--set", f"train.device={p.device}"]
        run = self.run("reproduce", cmd, self.left())
        if run is None:
            return
        values = {k: v for k, v in name_values(run.text).items() if k.startswith(("gdrae_", "ablation_"))}
        for key, value in values.items():
            self.fig(f"reproduce_{key}", value)
        if not run.ok or not values:
            self.fig("reproduce_failed", run.why())

    # -- what comes back

    def bundle(self) -> None:
        """Copy the pictures to OUT and pack every small log, JSON and picture into OUT/logs.tar.gz."""
        w = self.work
        pictures = {
            "reconstruction.png": sorted((w / "shapes2d" / "images").glob("reconstruction_*.png")),
            "traversal.png": sorted((w / "eval" / "images").glob("eval-step-*-traversal.png")),
            "mi.png": sorted((w / "eval" / "images").glob("eval-step-*-mi.png")),
            "dtype_curves.png": [w / "dtype" / "curves.png"],
            "reproduce_figures.png": [w / "reproduce" / "figures.png"],
        }
        for name, paths in pictures.items():
            paths = [q for q in paths if q.exists()]
            if paths:
                shutil.copyfile(paths[-1], self.out / name)
        skip = {"cache", "compile", "codes", "tb", "checkpoints"}
        kept = (".log", ".json", ".jsonl", ".csv", ".md", ".yaml", ".txt", ".png")
        files = [q for q in sorted(w.rglob("*")) if q.is_file() and q.suffix in kept
                 and not skip & set(q.relative_to(w).parts)]
        tar = self.out / "logs.tar.gz"
        for with_pictures in (True, False):
            with tarfile.open(tar, "w:gz") as t:
                for q in files:
                    if with_pictures or q.suffix != ".png":
                        t.add(q, arcname=str(Path("gpu_suite") / q.relative_to(w)))
            if tar.stat().st_size <= OUT_LIMITS["file_bytes"] - 2**20:
                break

    def check_out(self) -> None:
        problems = out_problems(self.out)
        self.fig("out_files", len([q for q in self.out.rglob("*") if q.is_file()]))
        if problems:
            self.fig("out_failed", "; ".join(problems))


def budgets_from_env(defaults: dict[str, int]) -> dict[str, int]:
    """The budgets, each replaced by an environment variable of its name when set (whole seconds)."""
    budgets = dict(defaults)
    for key in budgets:
        if os.environ.get(key, "").strip():
            budgets[key] = int(os.environ[key])
    return budgets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rehearse", action="store_true", default=os.environ.get("REHEARSE") == "1",
                        help="the same steps on CPU, tiny (also REHEARSE=1)")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "runs" / "gpu_suite"),
                        help="where the files that come back go (default: $OUT)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a new one under /tmp)")
    args = parser.parse_args()
    t0 = float(os.environ.get("SUITE_T0") or time.time())  # the wrapper's start: its wheel install counts
    plan = REHEARSAL_PLAN if args.rehearse else GPU_PLAN
    budgets = budgets_from_env(REHEARSAL_BUDGETS if args.rehearse else BUDGETS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gdrae-gpu-suite-"))
    work.mkdir(parents=True, exist_ok=True)
    suite = Suite(out, work, plan, budgets, t0, args.rehearse)
    suite.note(f"{'rehearsal on CPU' if args.rehearse else 'GPU suite'}: out {out}, work {work}, "
               + " ".join(f"{k}={v}" for k, v in budgets.items()))
    suite.fig("rehearse", int(args.rehearse))
    if not suite.setup():
        suite.guard("bundle", suite.bundle)
        suite.fig("suite_s", f"{suite.now():.0f}")
        suite.check_out()
        sys.exit(2)
    prepare = suite.start("prepare", [PY, "-c", PREPARE_CODE, "prepare", plan.dataset, "--cache-dir", str(suite.cache)],
                          nice=True)
    suite.note("item 1: step speed")
    suite.guard("item1", suite.item1)
    suite.guard("bundle", suite.bundle)
    suite.note("item 4: shapes2d-synth")
    dci = None
    try:
        dci = suite.item4(prepare)
    except Exception as exc:  # noqa: BLE001
        suite.fig("item4_failed", f"suite error: {type(exc).__name__}: {exc}")
    if prepare.proc is not None and prepare.proc.poll() is None:
        wait_group(prepare.proc, 0, signal.SIGKILL, 0)
    suite.guard("bundle", suite.bundle)
    suite.note("item 3: bfloat16")
    suite.guard("item3", suite.item3)
    suite.guard("eval_dci", suite.finish_dci, dci)
    suite.guard("bundle", suite.bundle)
    suite.note("item 5: Sector2D reproduction")
    suite.guard("reproduce", suite.item5)
    suite.fig("suite_s", f"{suite.now():.0f}")
    suite.guard("bundle", suite.bundle)
    suite.check_out()


if __name__ == "__main__":
    main()
