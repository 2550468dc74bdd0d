"""Any structure source read one structure at a time: an `ase.io` file, an ASE database or an
MPtrj JSON, as raw items that `parse_item` turns into `LabeledStructure`s (possibly in another
process: items pickle).

Ids and groups are those of the in-memory readers (`read_ase`, `read_ase_db`,
`read_mptrj_json`), so a streamed source and a read one name their structures alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import ase.db
import ase.io

from equijax.data.mptrj_stream import iter_mptrj_frames, parse_streamed
from equijax.data.readers import from_ase_atoms
from equijax.data.structures import LabeledStructure


class SourceItem(NamedTuple):
    """One structure of a source, unparsed: ``payload`` is an MPtrj frame dict (or the error of
    a malformed material) for ``kind == "mptrj"``, an `ase.Atoms` with its labels otherwise."""

    kind: str
    id: str
    group: str | None
    payload: object


def source_kind(path: str | os.PathLike) -> str:
    """``"mptrj"`` for ``.json`` (MPtrj layout), ``"db"`` for an ASE ``.db``, else ``"ase"``."""
    suffix = Path(path).suffix
    return {".json": "mptrj", ".db": "db"}.get(suffix, "ase")


def iter_source(path: str | os.PathLike) -> Iterator[SourceItem]:
    """Yield every structure of ``path`` in file order, one at a time (peak memory: one MPtrj
    material, one ASE frame or one database row). Raises `FileNotFoundError` for a missing file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    kind = source_kind(path)
    if kind == "mptrj":
        for structure_id, mp_id, frame in iter_mptrj_frames(path):
            yield SourceItem(kind, structure_id, mp_id, frame)
    elif kind == "db":
        with ase.db.connect(path) as db:
            for row in db.select():
                pairs = row.key_value_pairs
                structure_id = pairs.get("structure_id", pairs.get("id", f"db:{row.id}"))
                group = pairs.get("group")
                yield SourceItem(
                    kind, str(structure_id), None if group is None else str(group), row.toatoms()
                )
    else:
        for i, atoms in enumerate(ase.io.iread(path, index=":")):
            structure_id = atoms.info.get("id", f"{path.stem}:{i}")
            group = atoms.info.get("group")
            yield SourceItem(kind, str(structure_id), None if group is None else str(group), atoms)


def parse_item(item: SourceItem) -> LabeledStructure:
    """The `LabeledStructure` of a source item; raises ValueError/TypeError/KeyError (the reason)
    for a malformed one."""
    if item.kind == "mptrj":
        return parse_streamed(item.id, item.group, item.payload)
    return from_ase_atoms(item.payload, item.id, item.group)
