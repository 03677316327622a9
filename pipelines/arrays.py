"""Named arrays in a user's data file, read whole or by rows: .npz, .h5/.hdf5, .mat (v5 and v7.3), .pt/.pth.

:func:`open_arrays` opens one file and hands out :class:`StoredArray` views by
key. What each format allows:

- ``.h5``/``.hdf5`` and MATLAB v7.3 ``.mat`` (which are HDF5 files; h5py reads
  MATLAB's arrays with their axes reversed): read from disk, only the rows
  asked for. A key is a dataset path (``group/images``).
- ``.npz`` saved uncompressed (``np.savez``): rows are read from their place
  in the archive with plain seeks, so only the rows asked for come into
  memory. Compressed
  (``np.savez_compressed``): the array is decompressed whole into memory.
  Pickled (object) arrays are refused, never loaded.
- MATLAB v5 ``.mat`` (``scipy.io.loadmat``) and ``.pt``/``.pth`` (a dict of
  named tensors, ``torch.load(weights_only=True)``): loaded whole.

Every problem is a :class:`gdrae.errors.GdraeError` of one line naming the
file (and the key).
"""
from __future__ import annotations

import pickle
import struct
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import h5py
import numpy as np

from gdrae.errors import GdraeError
from pipelines.checks import require_readable

FORMATS = (".npz", ".h5", ".hdf5", ".mat", ".pt", ".pth")
Rows = slice | np.ndarray  # a range of rows, or increasing row indices


@dataclass(frozen=True)
class StoredArray:
    """One array of a data file: its shape and dtype as NumPy sees them, and a reader of rows along ``axis``."""

    path: Path
    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    in_memory: bool  # loaded whole (v5 .mat, compressed .npz, .pth) rather than read from disk by rows
    _read: Callable[[tuple], np.ndarray]

    def take(self, rows: Rows, axis: int = 0) -> np.ndarray:
        """The rows ``rows`` (a slice, or increasing indices) along ``axis``; the other axes whole."""
        index = tuple(rows if k == axis else slice(None) for k in range(len(self.shape)))
        try:
            return np.asarray(self._read(index))
        except (OSError, ValueError, zlib.error) as e:
            raise GdraeError(f"{self.path}: {self.key}: expected readable data, got a corrupt or truncated file "
                             f"({e})") from None

    def whole(self) -> np.ndarray:
        """The whole array (small arrays such as labels)."""
        return self.take(slice(None))


class ArrayFile:
    """An open data file: its keys and its arrays (see the module docstring for what each format allows)."""

    def __init__(self, path: Path, keys: list[str], get: Callable[[str], StoredArray]):
        self.path, self.keys, self._get = path, keys, get

    def array(self, key: str, what: str) -> StoredArray:
        """The array named ``key``; ``what`` names the declaration key in the error when it is absent."""
        if key not in self.keys:
            raise GdraeError(f"{self.path}: {what}: expected an array named {key!r} in the file, got "
                             f"{_listing(self.keys)}")
        return self._get(key)


@contextmanager
def open_arrays(path: Path) -> Iterator[ArrayFile]:
    """Open ``path`` by its suffix; a GdraeError names the file when it is unreadable, damaged or of another kind."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise GdraeError(f"{path}: expected a data file ending in {', '.join(FORMATS)}, got {suffix or 'no suffix'}")
    require_readable(path)
    if suffix in (".h5", ".hdf5") or (suffix == ".mat" and h5py.is_hdf5(path)):
        with _hdf5(path, "MATLAB v7.3 .mat" if suffix == ".mat" else "HDF5") as f:
            yield f
    elif suffix == ".npz":
        with _npz(path) as f:
            yield f
    elif suffix == ".mat":
        yield _mat_v5(path)
    else:
        yield _torch(path)


def in_memory_hint(path: Path) -> str:
    """What to do when a file that is loaded whole does not fit in memory."""
    return (f"{path}: out of memory: this format is loaded whole (a v5 .mat, a compressed .npz, a .pth); save it "
            "as .h5, an uncompressed .npz (np.savez) or a v7.3 .mat, which are read in blocks")


@contextmanager
def _hdf5(path: Path, kind: str) -> Iterator[ArrayFile]:
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise GdraeError(f"{path}: expected a readable {kind} file, got a corrupt or truncated file ({e})") from None
    with f:
        keys: list[str] = []
        f.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)

        def get(key: str) -> StoredArray:
            data = f[key]
            return StoredArray(path, key, tuple(data.shape), data.dtype, False, data.__getitem__)

        yield ArrayFile(path, keys, get)


_CORRUPT_ZIP = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error)


@contextmanager
def _npz(path: Path) -> Iterator[ArrayFile]:
    try:
        archive = zipfile.ZipFile(path)
        members = {n[:-4]: archive.getinfo(n) for n in archive.namelist() if n.endswith(".npy")}
    except _CORRUPT_ZIP as e:
        raise GdraeError(f"{path}: expected a readable .npz archive, got a corrupt or truncated file ({e})") from None
    with archive:

        def get(key: str) -> StoredArray:
            info = members[key]
            try:
                with archive.open(info) as member:
                    shape, fortran, dtype = npy_header(member, path, key)
                    header = member.tell()
                if info.compress_type == zipfile.ZIP_STORED:
                    offset = _member_data_offset(path, info) + header
                    return StoredArray(path, key, shape, dtype, False,
                                       lambda index: _read_stored(path, offset, shape, dtype, fortran, index))
                with archive.open(info) as member:
                    whole = np.lib.format.read_array(member, allow_pickle=False)
            except GdraeError:
                raise
            except MemoryError:
                raise GdraeError(in_memory_hint(path)) from None
            except _CORRUPT_ZIP as e:
                raise GdraeError(f"{path}: {key}: expected a readable array, got a corrupt or truncated file ({e})") from None
            return StoredArray(path, key, whole.shape, whole.dtype, True, whole.__getitem__)

        yield ArrayFile(path, sorted(members), get)


def _read_stored(path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype, fortran: bool,
                 index: tuple) -> np.ndarray:
    """``array[index]`` of an array stored uncompressed at ``offset`` in ``path``.

    Whole rows (a C-order array indexed on its first axis) are read with
    plain seeks, so only what is asked for comes into memory; other cases
    map the file for this one read (the mapping, and the pages it touched,
    go once the rows are copied).
    """
    rows = index[0]
    if fortran or any(i != slice(None) for i in index[1:]):
        return np.array(np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset,
                                  order="F" if fortran else "C")[index])
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    starts = range(*rows.indices(shape[0])) if isinstance(rows, slice) else rows
    out = np.empty((len(starts), *shape[1:]), dtype=dtype)
    with open(path, "rb") as f:
        if isinstance(rows, slice):  # consecutive rows: one read
            f.seek(offset + (starts[0] if len(starts) else 0) * row_bytes)
            got = f.readinto(memoryview(out.reshape(-1).view(np.uint8)))
            want = out.nbytes
        else:
            got = want = 0
            for k, row in enumerate(rows):
                f.seek(offset + int(row) * row_bytes)
                got += f.readinto(memoryview(out[k].reshape(-1).view(np.uint8)))
                want += row_bytes
    if got != want:
        raise OSError(f"expected {want} bytes, got {got} (truncated file)")
    return out


def npy_header(member: BinaryIO, path: Path, key: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) of a ``.npy`` member; object (pickled) arrays are refused."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise GdraeError(f"{path}: {key}: expected .npy format version 1.0 or 2.0, got {version}")
    if dtype.hasobject:
        raise GdraeError(f"{path}: {key}: expected a numeric array, got pickled Python objects (refused)")
    return tuple(shape), bool(fortran), dtype


def _member_data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset in the archive where a stored member's data begins (after its local header)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise GdraeError(f"{path}: {info.filename}: expected a zip local header, got a corrupt archive")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _mat_v5(path: Path) -> ArrayFile:
    import scipy.io

    try:
        keys = sorted(name for name, _, _ in scipy.io.whosmat(path))
    except Exception as e:  # scipy raises many types (MatReadError, ValueError, zlib.error) for damaged files
        raise GdraeError(f"{path}: expected a readable MATLAB .mat file, got a corrupt or truncated file ({e})") from None

    def get(key: str) -> StoredArray:
        try:
            whole = scipy.io.loadmat(path, variable_names=[key])[key]
        except MemoryError:
            raise GdraeError(in_memory_hint(path)) from None
        except Exception as e:
            raise GdraeError(f"{path}: {key}: expected a readable array, got a corrupt or truncated file ({e})") from None
        return StoredArray(path, key, whole.shape, whole.dtype, True, whole.__getitem__)

    return ArrayFile(path, keys, get)


def _torch(path: Path) -> ArrayFile:
    import torch

    from gdrae.checkpoint import torch_load

    try:
        obj = torch_load(path)  # weights only: a file holding pickled code is a GdraeError saying so
    except GdraeError:
        raise
    except MemoryError:
        raise GdraeError(in_memory_hint(path)) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise GdraeError(f"{path}: expected a readable .pt/.pth file, got a corrupt or truncated file ({e})") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise GdraeError(f"{path}: expected a dict of named tensors (torch.save({{'images': ..., 'labels': ...}})), "
                         f"got {type(obj).__name__}")

    def get(key: str) -> StoredArray:
        tensor = obj[key].detach().cpu()
        whole = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
        return StoredArray(path, key, whole.shape, whole.dtype, True, whole.__getitem__)

    return ArrayFile(path, sorted(obj), get)


def _listing(keys: list[str], show: int = 8) -> str:
    if not keys:
        return "no arrays"
    more = f" and {len(keys) - show} more" if len(keys) > show else ""
    return ", ".join(keys[:show]) + more
