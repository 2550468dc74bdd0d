"""`DiskArray` reads equal numpy's reads of the same file; bad sizes and indices fail clearly."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

from equijax.graphs.disk_array import DiskArray


@pytest.fixture
def stored(tmp_path):
    ref = np.random.default_rng(0).normal(size=(37, 3, 2)).astype(np.float32)
    ref.tofile(tmp_path / "a.bin")
    return DiskArray(tmp_path / "a.bin", np.float32, ref.shape), ref


def test_rows_and_blocks_equal_numpy(stored):
    a, ref = stored
    assert len(a) == 37 and a.shape == ref.shape
    for i in (0, 5, 36, -1, -37):
        np.testing.assert_array_equal(a[i], ref[i])
    for start, stop in ((0, 0), (3, 11), (30, 37), (0, 37)):
        np.testing.assert_array_equal(a[start:stop], ref[start:stop])
        np.testing.assert_array_equal(a.read(start, stop), ref[start:stop])
    np.testing.assert_array_equal(a[-5:], ref[-5:])
    np.testing.assert_array_equal(np.asarray(a), ref)
    block = a[3:5]
    block[:] = 0  # a fresh, writable array: the file is unchanged
    np.testing.assert_array_equal(a[3:5], ref[3:5])


def test_reads_from_threads_equal_numpy(stored):
    a, ref = stored
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(200):
            start = int(rng.integers(0, 37))
            stop = int(rng.integers(start, 38))
            if not np.array_equal(a[start:stop], ref[start:stop]):
                errors.append((start, stop))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_pickles_as_its_file(stored):
    a, ref = stored
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(a))[2:9], ref[2:9])


def test_wrong_size_and_bad_index(tmp_path, stored):
    a, _ = stored
    np.zeros(5, np.int64).tofile(tmp_path / "b.bin")
    with pytest.raises(ValueError, match="has 40 bytes, expected 48"):
        DiskArray(tmp_path / "b.bin", np.int64, (6,))
    with pytest.raises(IndexError, match="out of range"):
        a[37]
    with pytest.raises(IndexError, match="contiguous"):
        a[::2]
    (tmp_path / "c.bin").write_bytes(b"")
    empty = DiskArray(tmp_path / "c.bin", np.int32, (0, 4))
    assert np.asarray(empty).shape == (0, 4)
