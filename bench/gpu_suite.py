"""The GPU checks in one prepared run: step speed, a first image result, bfloat16 curves, Sector2D.

    python bench/gpu_suite.py --out runs/gpu_suite --budget 540    # on a CUDA machine
    python bench/gpu_suite.py --out /tmp/gpu-suite --rehearse      # the same steps on CPU, tiny

(bench/gpu_suite.sh runs it too, after installing wheels for a machine
without network access.) The steps run in priority order, each as its own
process under its own budget (BUDGETS below), cut to what is left of
``--budget`` seconds:

  step speed          bench/train_step_suite.py: eager for shapes2d, shapes3d
                      and sector2dunif with --breakdown, then CUDA graphs for
                      sector2dunif and shapes2d, then torch.compile for the
                      three, each with a cold compile cache
  shapes2d result     gdrae-data prepare shapes2d-synth (in the background
                      from the start); gdrae-train configs/shapes2d.yaml on it
                      (data.name=shapes2d-synth) until its budget ends, then
                      SIGINT: a checkpoint of the stop step, no pictures and
                      no evaluation; gdrae-eval of that checkpoint (histogram
                      family, MIG, SAP, geometry), then DCI in the background
                      from the stored code table; bench/eval.py's encoding
                      throughput
  bfloat16 gap        bench/dtype_curves.py on sector2dunif: float32, then
                      bfloat16, each stopped by SIGINT at its budget, then
                      their comparison
  Sector2D            bench/reproduce.py sector2dunif --steps 100000, only when
                      the time left covers its estimate (from the eager
                      sector2dunif step time)

Every figure is printed as one ``name=value`` line and appended to
OUT/figures.txt at once. A step that fails prints ``<step>_failed=<reason>``
(``<step>_skipped=<reason>`` when it did not start) and the rest still runs.
Everything stays under OUT: logs/ (one log per step), cache/, compile/,
shapes2d/ (the training run, read through gdrae.runlog), eval/ and eval_dci/
(gdrae-eval's metrics and pictures), dtype/ (curves.png) and reproduce/
(results.md, figures.png).
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
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # gdrae.runlog reads the runs (imported where used: after the import check)
PY = sys.executable

BUDGET_S = 540  # --budget: the whole suite (the wrapper's wheel install included); no step runs past it
REHEARSAL_BUDGET_S = 480
# Each step's budget in seconds of wall clock, sized for the default --budget on one large GPU with 16 cores.
# Each can be overridden by an environment variable of its name.
BUDGETS = {
    "SETUP_S": 60,         # import check: torch sees the GPU, gdrae and its packages import
    "PREPARE_S": 180,      # gdrae-data prepare shapes2d-synth, in the background (about 40 s on 2 cores)
    "STEP_SPEED_S": 200,   # step speed ends by this second of the suite; a run that cannot start by then is skipped
    "EAGER_S": 45,         # each eager step-speed run (3): start-up, 2 + 20 steps, 20 profiled steps
    "GRAPHS_S": 100,       # each CUDA-graphs run (sector2dunif, shapes2d): compile, record, 20 steps
    "COMPILE_S": 100,      # each torch.compile run (sector2dunif, shapes2d, shapes3d)
    "AFTER_TRAIN_S": 160,  # kept after the shapes2d training: its evaluation, the encoding bench, bfloat16
    "TRAIN_MIN_S": 60,     # the shapes2d training runs budget - now - AFTER_TRAIN_S, within these bounds,
    "TRAIN_MAX_S": 300,    # then gets SIGINT (gdrae-train writes a checkpoint of that step and exits)
    "TRAIN_GRACE_S": 60,   # from that SIGINT to a SIGKILL
    "EVAL_S": 120,         # gdrae-eval histogram,mig,sap,geometry: one encoding pass over 737,280 images
    "DCI_S": 240,          # DCI in the background (CPU, 5 threads) from the stored code table, during the rest
    "ENCODE_S": 60,        # bench/eval.py: encoding throughput
    "DTYPE_RUN_S": 60,     # each of the two bfloat16-gap runs (2,000 Sector2D steps), then SIGINT
    "DTYPE_CMP_S": 40,     # their comparison: reads both runs, draws curves.png
    "REPRO_EVAL_S": 150,   # the Sector2D reproduction's estimate: the evaluations of one run (DCI at its last step)
}
# --rehearse: the same steps on this CPU in a few minutes; compile runs are cut or skipped by their budgets
REHEARSAL_BUDGETS = {
    **BUDGETS, "PREPARE_S": 60, "STEP_SPEED_S": 150, "EAGER_S": 60, "GRAPHS_S": 20, "COMPILE_S": 20,
    "AFTER_TRAIN_S": 150, "TRAIN_MIN_S": 20, "TRAIN_MAX_S": 20, "TRAIN_GRACE_S": 90, "DCI_S": 150,
    "DTYPE_RUN_S": 40, "REPRO_EVAL_S": 200,
}
MIN_RUN_S = 10  # a step with less time left than this is skipped
# the Sector2D reproduction's estimate: a training step costs this many bench steps (data, logging, pictures)
TRAIN_OVERHEAD = 1.5

STEP_CONFIGS = ("shapes2d", "shapes3d", "sector2dunif")
GRAPHS_CONFIGS = ("sector2dunif", "shapes2d")
COMPILE_CONFIGS = ("sector2dunif", "shapes2d", "shapes3d")
# figures kept from a bench/train_step_suite.py line, besides ms_per_step
STEP_KEYS = ("warmup_s", "steps_per_s", "cpu_ms_per_step", "peak_cuda_mem_mib", "peak_rss_mib", "batch",
             "conv_kxk_ms", "mix_1x1_and_matmul_ms", "layout_ms", "other_ms", "profiled_total_ms")
STEP_LINE = re.compile(r"^(\S+) (\S+) (?:failed: (.*)|ms_per_step=(\S+)\s+\((.*)\))\s*$")
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
    dataset: str                 # the shapes2d result's cache
    train_sets: tuple = ()       # extra overrides of its training
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


def stopped_run(run_dir: Path) -> dict[str, str]:
    """Figures of a training stopped by a signal, read through gdrae.runlog and the checkpoint folder.

    ``logged_step`` and ``steps_per_s``: the last losses record (a stop logs
    its step's losses); ``checkpoint_step``: the newest ``step-N.pt`` (a stop
    writes one of its step); ``pictures_at_stop``: the pictures of that step
    (a stop draws none). Figures the run did not leave are absent.
    """
    from gdrae.checkpoint import step_numbers
    from gdrae.runlog import logged_speed, read_pictures

    figures = {}
    speed = logged_speed(run_dir)
    if speed is not None:
        figures["logged_step"], figures["steps_per_s"] = str(speed[0]), f"{speed[1]:.4g}"
    steps = step_numbers(run_dir / "checkpoints") if (run_dir / "checkpoints").is_dir() else []
    if steps:
        figures["checkpoint_step"] = str(steps[-1])
        figures["pictures_at_stop"] = str(len(read_pictures(run_dir).get(steps[-1], {})))
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
    """The shapes2d training's time: what is left once ``after_s`` is kept for later steps, within [low_s, high_s]."""
    return max(low_s, min(high_s, left_s - after_s))


def repro_estimate(steps: int, ms_per_step: float, eval_s: float, runs: int = 2) -> float:
    """Seconds bench/reproduce.py needs: ``runs`` trainings of ``steps`` steps, plus their evaluations."""
    return runs * (steps * ms_per_step / 1000 * TRAIN_OVERHEAD + eval_s)


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
    """The steps of the suite, their processes, its clock (``budget_s`` from ``t0``) and its figures."""

    def __init__(self, out: Path, plan: Plan, budgets: dict[str, int], budget_s: float, t0: float):
        self.out, self.plan, self.b, self.budget_s, self.t0 = out, plan, budgets, budget_s, t0
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cache = out / "cache"
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
        """Seconds before the steps must end."""
        return self.budget_s - self.now()

    def fig(self, name: str, value) -> None:
        """One figure: printed, and appended to OUT/figures.txt and OUT/suite.log."""
        line = f"{name}={one_line(value)}"
        self._say(line)
        with open(self.figures_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def note(self, text: str) -> None:
        """One line of progress: printed, and appended to OUT/suite.log."""
        self._say(f"# {self.now():5.0f} s  {text}")

    def _say(self, line: str) -> None:
        print(line, flush=True)
        with open(self.out / "suite.log", "a", encoding="utf-8") as f:
            f.write(line + "\n")

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
                why += " (pip install -e . first; without network access: wheels in .whl/, see bench/gpu_suite.sh)"
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

    def step_speed(self) -> None:
        """Step speed: eager (with the breakdown), CUDA graphs, compile; each run a fresh process and compile cache."""
        deadline = self.b["STEP_SPEED_S"]
        runs = ([(c, "eager", self.b["EAGER_S"]) for c in STEP_CONFIGS]
                + [(c, "cudagraphs", self.b["GRAPHS_S"]) for c in GRAPHS_CONFIGS]
                + [(c, "compile", self.b["COMPILE_S"]) for c in COMPILE_CONFIGS])
        for config, mode, cap in runs:
            self.guard(f"{config}_{mode}", self._step_speed_run, config, mode, min(cap, deadline - self.now()))

    def _step_speed_run(self, config: str, mode: str, cap: float) -> None:
        name = f"{config}_{mode}"
        if cap < MIN_RUN_S:
            self.fig(f"{name}_skipped", f"the step speed's {self.b['STEP_SPEED_S']} s were spent")
            return
        compile_cache = self.out / "compile" / name
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

    def shapes2d_result(self, prepare: Background) -> Background | None:
        """The first image result: training stopped by SIGINT, its checkpoint evaluated, the encoding throughput.

        Returns the DCI evaluation running in the background (or None).
        """
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

        run_dir = self.out / "shapes2d"
        budget = train_budget(self.left(), b["AFTER_TRAIN_S"], b["TRAIN_MIN_S"], b["TRAIN_MAX_S"])
        self.fig("train_budget_s", f"{budget:.0f}")
        sets = [f"data.name={p.dataset}", f"data.cache_dir={self.cache}", f"train.run_dir={run_dir}",
                f"train.device={p.device}", *p.train_sets]
        cmd = [PY, "-m", "cli.train", "--config", "configs/shapes2d.yaml", *(a for s in sets for a in ("--set", s))]
        run = self.run("train", cmd, budget, stop=signal.SIGINT, grace=b["TRAIN_GRACE_S"])
        if run is None:
            return None
        self.fig("train_wall_s", f"{run.seconds:.1f}")
        stopped = stopped_run(run_dir)
        for key, value in stopped.items():
            self.fig(f"train_{key}", value)
        ckpt = run_dir / "checkpoints" / "latest.pt"
        if not ckpt.exists():
            self.fig("train_failed", run.why())
            return None
        if not run.timed_out:
            self.fig("train_note", "ended before its SIGINT: " + run.why())
        elif run.rc != 0:  # a stop signal ends gdrae-train with exit 0
            self.fig("train_failed", f"exit {run.rc} after its SIGINT: " + last_line(run.text))
        else:  # the stop: a checkpoint of the step it logged last, and no pictures
            if stopped.get("checkpoint_step") != stopped.get("logged_step"):
                self.fig("train_stop_failed", f"the newest checkpoint is of step {stopped.get('checkpoint_step')}, "
                         f"the last losses of step {stopped.get('logged_step')}")
            if stopped.get("pictures_at_stop", "0") != "0":
                self.fig("train_stop_failed", f"{stopped['pictures_at_stop']} pictures at the stop step, expected none")

        eval_dir = self.out / "eval"
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
                shutil.copytree(eval_dir / "codes", self.out / "eval_dci" / "codes", dirs_exist_ok=True)
                dci = self.start("eval_dci", [PY, "-c", DCI_CODE, str(ckpt), str(self.cache),
                                              str(self.out / "eval_dci"), json.dumps(p.dci)])
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
        """eval_<metric> figures of the newest evaluation under ``eval_dir``, read by gdrae.runlog.last_evaluation
        (hist20 and hist50 of the histogram family; the other bin counts stay in metrics/)."""
        from gdrae.runlog import last_evaluation

        record = last_evaluation(eval_dir)
        if record is None:
            self.fig(f"{eval_dir.name}_failed", "no evaluation in metrics/")
            return
        self.fig(f"{eval_dir.name}_step", record.pop("step"))
        for key, value in record.items():
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
        self._metrics_figures(self.out / "eval_dci")

    def bfloat16_gap(self) -> None:
        """float32 against bfloat16 on Sector2D: each run stopped at its budget, then compared as far as both got."""
        b, p = self.b, self.plan
        out = self.out / "dtype"
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

    def sector2d_reproduction(self) -> None:
        """The published Sector2D run, when the time left covers its estimate (or REPRO_FORCE=1)."""
        p = self.plan
        if self.sector_ms is None:
            self.fig("reproduce_skipped", "no eager sector2dunif step time from the step speed to size it")
            return
        need = repro_estimate(p.repro_steps, self.sector_ms, self.b["REPRO_EVAL_S"])
        self.fig("reproduce_estimate_s", f"{need:.0f}")
        if need > self.left() and os.environ.get("REPRO_FORCE") != "1":
            self.fig("reproduce_skipped", f"needs about {need:.0f} s (2 runs of {p.repro_steps} steps at "
                     f"{self.sector_ms:g} ms, and their evaluations), {max(self.left(), 0):.0f} s left")
            return
        cmd = [PY, "bench/reproduce.py", "sector2dunif", "--steps", str(p.repro_steps), "--evals", str(p.repro_evals),
               "--out", str(self.out / "reproduce"), "--cache-dir", str(self.cache),
               "--set", f"train.device={p.device}"]
        run = self.run("reproduce", cmd, self.left())
        if run is None:
            return
        values = {k: v for k, v in name_values(run.text).items() if k.startswith(("gdrae_", "ablation_"))}
        for key, value in values.items():
            self.fig(f"reproduce_{key}", value)
        if not run.ok or not values:
            self.fig("reproduce_failed", run.why())

def budgets_from_env(defaults: dict[str, int]) -> dict[str, int]:
    """The budgets, each replaced by an environment variable of its name when set (whole seconds)."""
    budgets = dict(defaults)
    for key in budgets:
        value = os.environ.get(key, "").strip()
        if value:
            if not value.isdigit():
                raise ValueError(f"{key}: expected whole seconds, got {value!r}")
            budgets[key] = int(value)
    return budgets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_suite",
                        help="a new or empty folder for every log, run, figure and picture (default: runs/gpu_suite)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help=f"wall-clock seconds of the whole suite (default: {BUDGET_S}, "
                             f"with --rehearse {REHEARSAL_BUDGET_S}); the Sector2D reproduction runs when they "
                             "cover it")
    parser.add_argument("--rehearse", action="store_true", help="the same steps on CPU, at tiny sizes")
    args = parser.parse_args(argv)
    budget_s = args.budget if args.budget is not None else REHEARSAL_BUDGET_S if args.rehearse else BUDGET_S
    if not budget_s > 0:
        parser.error(f"--budget: expected a positive number of seconds, got {budget_s:g}")
    try:
        budgets = budgets_from_env(REHEARSAL_BUDGETS if args.rehearse else BUDGETS)
    except ValueError as exc:
        parser.error(str(exc))
    out = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        parser.error(f"--out: {out} is not an empty folder; expected a new or empty one (nothing is overwritten)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out: cannot create {out}: {exc.strerror or exc}")
    t0 = float(os.environ.get("SUITE_T0") or time.time())  # bench/gpu_suite.sh's start: its wheel install counts
    plan = REHEARSAL_PLAN if args.rehearse else GPU_PLAN
    suite = Suite(out, plan, budgets, budget_s, t0)
    suite.note(f"{'rehearsal on CPU' if args.rehearse else 'GPU suite'}: out {out}, budget {budget_s:g} s, "
               + " ".join(f"{k}={v}" for k, v in budgets.items()))
    suite.fig("rehearse", int(args.rehearse))
    if not suite.setup():
        suite.fig("suite_s", f"{suite.now():.0f}")
        sys.exit(2)
    prepare = suite.start("prepare", [PY, "-c", PREPARE_CODE, "prepare", plan.dataset, "--cache-dir", str(suite.cache)],
                          nice=True)
    suite.note("step speed")
    suite.guard("step_speed", suite.step_speed)
    suite.note("shapes2d result: shapes2d-synth")
    dci = None
    try:
        dci = suite.shapes2d_result(prepare)
    except Exception as exc:  # noqa: BLE001
        suite.fig("shapes2d_failed", f"suite error: {type(exc).__name__}: {exc}")
    if prepare.proc is not None and prepare.proc.poll() is None:
        wait_group(prepare.proc, 0, signal.SIGKILL, 0)
    suite.note("bfloat16 gap")
    suite.guard("dtype", suite.bfloat16_gap)
    suite.guard("eval_dci", suite.finish_dci, dci)
    suite.note("Sector2D reproduction")
    suite.guard("reproduce", suite.sector2d_reproduction)
    suite.fig("suite_s", f"{suite.now():.0f}")


if __name__ == "__main__":
    main()
