"""What the study tests share: a tiny GDRAE on Sector2D points, a study file of it, the command in a process."""
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# GDRAE's Sector2D model with a narrow flow: hundreds of steps a second on one core
TINY_SECTOR = ["model.sector2d.input_nc=16", "model.sector2d.hidden_nc=16", "model.sector2d.n_flows=1",
               "model.sv_hidden=16", "data.batch_size=8", "train.diag_points=4", "train.device=cpu",
               "train.image_every=100000", "train.eval_every=100000"]


def write_study(folder: Path, cache: Path, steps: int, seeds=2, overrides=(), models=None, **extra) -> Path:
    """``folder/study.yaml``: the tiny GDRAE (or ``models``) on sector2dunif, ``steps`` steps, ``seeds`` seeds,
    alignment evaluated, output in ``folder/out``; ``extra`` keys go into the file as they are."""
    models = models or [{"name": "gdrae", "config": str(REPO / "configs" / "sector2dunif.yaml"),
                         "overrides": TINY_SECTOR}]
    study = {"name": "tiny", "out": str(folder / "out"), "datasets": ["sector2dunif"], "seeds": seeds,
             "overrides": [f"train.steps={steps}", f"data.cache_dir={cache}", *overrides], "models": models,
             "evaluate": {"metrics": ["alignment"]}, **extra}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def study_cli(*args, timeout=600):
    """``gdrae-study ARGS`` in its own process, from the project folder."""
    return subprocess.run([sys.executable, "-m", "cli.study", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
