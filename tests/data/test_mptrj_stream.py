"""The streaming MPtrj reader against today's `read_mptrj_json` (one `json.load`) on small files:
same structures, ids, groups and labels in the same order, the same malformed frames by id."""

from __future__ import annotations

import json

import numpy as np
import pytest

from equijax.data import parse_mptrj, read_mptrj_json, write_mptrj_json
from equijax.data.mptrj_stream import iter_mptrj_json


def _assert_same(got, want):
    assert [s.id for s in got] == [s.id for s in want]
    for g, w in zip(got, want):
        assert g.group == w.group
        np.testing.assert_array_equal(g.atoms.numbers, w.atoms.numbers)
        np.testing.assert_array_equal(g.atoms.positions, w.atoms.positions)
        np.testing.assert_array_equal(g.atoms.cell.array, w.atoms.cell.array)
        np.testing.assert_array_equal(g.atoms.pbc, w.atoms.pbc)
        for name in ("energy", "forces", "stress", "magmoms"):
            a, b = getattr(g, name), getattr(w, name)
            assert (a is None) == (b is None), name
            if a is not None:
                np.testing.assert_array_equal(a, b, err_msg=name)


def test_stream_equals_json_load(mixed_structures, tmp_path):
    path = tmp_path / "mptrj.json"
    write_mptrj_json(mixed_structures, path)
    want, _ = read_mptrj_json(path)
    malformed = {}
    _assert_same(list(iter_mptrj_json(path, malformed)), want)
    assert malformed == {}


def test_malformed_frames_reported_by_id_as_today(mixed_structures, tmp_path):
    path = tmp_path / "mptrj.json"
    write_mptrj_json(mixed_structures[:4], path)
    data = json.loads(path.read_text())
    mp_id = next(iter(data))
    frame_id = next(iter(data[mp_id]))
    data[mp_id]["nan-energy"] = {**data[mp_id][frame_id], "energy_per_atom": "x"}
    data[mp_id]["no-structure"] = {"energy_per_atom": 1.0}
    data["mp-list"] = [1, 2]
    data[mp_id]["bad-force"] = {**data[mp_id][frame_id], "force": [[1.0, 2.0]]}
    path.write_text(json.dumps(data))
    want = parse_mptrj(json.loads(path.read_text()), skip_malformed=True)
    malformed = {}
    got = list(iter_mptrj_json(path, malformed))
    _assert_same(got, want.structures)
    assert malformed == want.malformed
    assert len(malformed) == 4
    with pytest.raises(ValueError, match="nan-energy"):
        list(iter_mptrj_json(path))


@pytest.mark.parametrize("text", ["[1, 2]", "", '{"mp-1": {"0": {'])
def test_not_an_mptrj_object(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="bad.json"):
        list(iter_mptrj_json(path, {}))
