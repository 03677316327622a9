"""Peak memory of `gdrae-data prepare --spec` on a large file of one's own. One `name=value` line per figure.

    python bench/declared.py [--images 1000000] [--format h5|npz|mat] [--shuffled] [--work DIR]

Writes a grey 64x64 image file of ``--images`` rows (a 1000 x (images / 1000)
factor grid) slice by slice, as ``.h5``, uncompressed ``.npz`` or v7.3
``.mat`` (the formats read in blocks), declares it, and prepares it in a
fresh child process so that the peak RSS is prepare's own (os.wait4).
``--shuffled`` writes the rows in a random order with a labels array.

Figures (target on a 2-core CPU machine, 1,000,000 images):
  declared_<format>_<order>_prepare_peak_rss_mb   < 1,500   (order: grid_order, or shuffled)
  declared_<format>_<order>_prepare_s             (for reference)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from gdrae.data.grid import index_to_factors  # noqa: E402
from pipelines.checks import row_blocks  # noqa: E402

CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from pipelines.declaration import declared_spec, load_declaration
from pipelines.store import prepare
start = time.perf_counter()
prepare(declared_spec(load_declaration({spec!r})), {raw!r}, {cache!r}, force=True, progress=False)
print(time.perf_counter() - start)
"""
SLICE = 20_000  # rows written at a time


def images_of(rows: np.ndarray) -> np.ndarray:
    """(len(rows), 64, 64) uint8: top half = grid index % 256, bottom half = index // 256 % 256."""
    out = np.empty((len(rows), 64, 64), dtype=np.uint8)
    out[:, :32] = (rows % 256)[:, None, None]
    out[:, 32:] = (rows // 256 % 256)[:, None, None]
    return out


def write_file(path: Path, n: int, sizes: tuple[int, int], shuffled: bool) -> bool:
    """Write ``n`` images (and labels when ``shuffled``) to ``path`` slice by slice; True when labels were written."""
    order = np.random.default_rng(0).permutation(n) if shuffled else np.arange(n)
    if path.suffix == ".npz":  # np.savez's layout, one member at a time, stored uncompressed
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open("images.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(member, {"descr": "|u1", "fortran_order": False,
                                                            "shape": (n, 64, 64)})
                for start, stop in row_blocks(n, SLICE):
                    member.write(images_of(order[start:stop]).tobytes())
            if shuffled:
                with archive.open("labels.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, index_to_factors(order, sizes))
        return shuffled
    with h5py.File(path, "w", userblock_size=512 if path.suffix == ".mat" else 0) as f:
        images = f.create_dataset("images", shape=(n, 64, 64), dtype=np.uint8)
        for start, stop in row_blocks(n, SLICE):
            images[start:stop] = images_of(order[start:stop])
        if shuffled:
            f.create_dataset("labels", data=index_to_factors(order, sizes))
    return shuffled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000, help="rows of the file (a multiple of 1000)")
    parser.add_argument("--format", choices=("h5", "npz", "mat"), default="h5")
    parser.add_argument("--shuffled", action="store_true", help="rows in a random order, with labels")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    args = parser.parse_args()
    sizes = (1000, args.images // 1000)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        raw_dir, cache_dir = Path(tmp) / "raw", Path(tmp) / "cache"
        raw_dir.mkdir()
        path = raw_dir / f"big.{args.format}"
        start = time.perf_counter()
        labels = write_file(path, int(np.prod(sizes)), sizes, args.shuffled)
        print(f"# wrote {path.name} ({path.stat().st_size / 1e9:.1f} GB) in {time.perf_counter() - start:.0f} s",
              flush=True)
        spec = Path(tmp) / "big.yaml"
        spec.write_text(yaml.safe_dump({"name": "big", "file": path.name, "images": "images", "layout": "NHW",
                                        "factors": [{"name": "a", "size": sizes[0]}, {"name": "b", "size": sizes[1]}],
                                        "labels": "labels" if labels else None}))
        code = CHILD.format(root=str(ROOT), spec=str(spec), raw=str(raw_dir), cache=str(cache_dir))
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage (ru_maxrss in KB on Linux)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"prepare failed with exit code {os.waitstatus_to_exitcode(status)}")
        order = "shuffled" if args.shuffled else "grid_order"
        print(f"declared_{args.format}_{order}_prepare_s={float(out.strip().splitlines()[-1]):.1f}", flush=True)
        print(f"declared_{args.format}_{order}_prepare_peak_rss_mb={usage.ru_maxrss / 1024:.0f}", flush=True)


if __name__ == "__main__":
    main()
