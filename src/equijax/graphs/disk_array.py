"""A read-only array stored in a flat binary file whose rows are read on demand with
``os.preadv`` into fresh arrays.

Unlike ``np.memmap``, nothing stays mapped: the process's resident memory holds only the rows a
caller keeps. (Pages of a memory map that were read count in RSS as file-backed memory until the
kernel reclaims them, and a fault maps up to 64 KB around it: reading random structures of a
large dataset through maps grew a training run's RSS with the dataset's size.) What was read
stays in the kernel's page cache, which is shared and not charged to the process.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class DiskArray:
    """``shape[0]`` rows of ``dtype`` with trailing shape ``shape[1:]`` in ``file`` (C order,
    no header). ``a[i]`` reads row ``i``, ``a[start:stop]`` a contiguous block (step 1) and
    ``np.asarray(a)`` the whole array, each into a new array. Safe to read from several threads
    (positional reads). Raises `ValueError` if the file's size does not match the shape."""

    def __init__(self, file: str | os.PathLike, dtype, shape: tuple[int, ...]):
        self.file, self.dtype = Path(file), np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self._row_shape = self.shape[1:]
        self._row_bytes = int(np.prod(self._row_shape, dtype=np.int64)) * self.dtype.itemsize
        expected = self.shape[0] * self._row_bytes
        actual = self.file.stat().st_size
        if actual != expected:
            raise ValueError(f"{self.file} has {actual} bytes, expected {expected}: corrupted")
        self._fd = os.open(self.file, os.O_RDONLY) if expected else None

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (0 <= start <= stop <= len) as a new (stop - start, ...) array."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"rows {start}:{stop} out of range for {len(self)} in {self.file}")
        out = np.empty((stop - start, *self._row_shape), self.dtype)
        if out.nbytes:
            view, done = memoryview(out.reshape(-1).view(np.uint8)), 0
            while done < out.nbytes:  # preadv may return fewer bytes than asked
                n = os.preadv(self._fd, [view[done:]], start * self._row_bytes + done)
                if n <= 0:
                    raise OSError(f"{self.file}: unexpected end of file at row {start}")
                done += n
        return out

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("DiskArray reads contiguous rows only (slice step 1)")
            return self.read(start, max(start, stop))
        i = int(key)
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} in {self.file}")
        return self.read(i % len(self), i % len(self) + 1)[0]

    def __array__(self, dtype=None, copy=None):
        out = self.read(0, len(self))
        return out if dtype is None else out.astype(dtype)

    def __reduce__(self):  # pickles as its file, reopened on load
        return DiskArray, (str(self.file), self.dtype.str, self.shape)

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
            self._fd = None
