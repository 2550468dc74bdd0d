"""MPtrj JSON read by streaming (`ijson`): one material's frames in memory at a time, so the
peak memory does not depend on the file's size (the real file is about 11 GB of text).

Same layout, ids, units and malformed-frame reasons as `equijax.data.mptrj.read_mptrj_json`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import ijson

from equijax.data.mptrj import parse_frame
from equijax.data.structures import LabeledStructure

MALFORMED_MATERIAL = "expected {frame_id: frame}"


def iter_mptrj_frames(path: str | os.PathLike) -> Iterator[tuple[str, str, object]]:
    """Yield ``(structure_id, mp_id, frame)`` for every frame of an MPtrj JSON file, in file order.

    ``structure_id`` is ``f"{mp_id}/{frame_id}"``; ``frame`` is the raw (unparsed) frame dict, or
    for a material that is not a ``{frame_id: frame}`` object, a `ValueError` naming it (then
    ``structure_id == mp_id``). Only one material is held in memory at a time.

    Raises:
        ValueError: if the file is not a JSON object at the top level, or is not valid JSON
            (the message names the file).
    """
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
        if not head.startswith(b"{"):
            kind = "an empty file" if not head else f"a JSON value starting with {head[:1]!r}"
            raise ValueError(
                f"{path}: expected a JSON object {{mp_id: {{frame_id: frame}}}}, got {kind}"
            )
        f.seek(0)
        try:
            for mp_id, frames in ijson.kvitems(f, "", use_float=True):
                if not isinstance(frames, dict):
                    err = ValueError(f"{MALFORMED_MATERIAL}, got {type(frames).__name__}")
                    yield str(mp_id), str(mp_id), err
                    continue
                for frame_id, frame in frames.items():
                    yield f"{mp_id}/{frame_id}", str(mp_id), frame
        except ijson.JSONError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None


def parse_streamed(structure_id: str, mp_id: str, frame) -> LabeledStructure:
    """A frame of `iter_mptrj_frames` -> `LabeledStructure`; raises ValueError/TypeError/KeyError
    (the reason) for a malformed one."""
    if isinstance(frame, Exception):
        raise frame
    return parse_frame(structure_id, mp_id, frame)


def iter_mptrj_json(
    path: str | os.PathLike, malformed: dict[str, str] | None = None
) -> Iterator[LabeledStructure]:
    """Stream the well-formed frames of an MPtrj JSON file as `LabeledStructure`s (file order).

    Malformed frames are skipped and recorded as ``malformed[id] = reason`` when a dict is
    given; without one the first malformed frame raises `ValueError` naming its id. Duplicate ids
    cannot occur (JSON object keys) unless the file repeats a key; they are not checked here.
    """
    for structure_id, mp_id, frame in iter_mptrj_frames(path):
        try:
            yield parse_streamed(structure_id, mp_id, frame)
        except (ValueError, TypeError, KeyError) as err:
            if malformed is None:
                raise ValueError(f"{path}: malformed MPtrj entry {structure_id}: {err}") from None
            malformed[structure_id] = str(err)
