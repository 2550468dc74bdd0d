"""``equijax data build``: a structure source -> an on-disk `DiskDataset`, by parallel workers,
resumable after a kill.

The source is streamed in parts of ``part_size`` structures. Each part is parsed, turned into
graphs and labels, and written by a worker to ``OUT.partial/parts/NNNNNN`` under a temporary
name renamed when complete, so after a kill a rerun skips the finished parts (it re-reads the
source up to them, but builds no graph twice). The parts are then appended to ``OUT.partial/
merged`` (graph indices are local to each graph, so parts concatenate as they are), each deleted
once it is in, so a build needs little disk beyond the dataset; a killed merge resumes too. The
merged directory becomes ``OUT`` with ``dataset.json`` written last.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from equijax.data.stats import StatsAccumulator
from equijax.data.stream import SourceItem, iter_source, parse_item
from equijax.graphs import cache
from equijax.graphs.build import DEFAULT_BOND_CUTOFF, DEFAULT_CUTOFF, atoms_to_graph
from equijax.graphs.dataset import DATASET_FORMAT, FILES, DiskDataset, file_sha256, is_dataset
from equijax.graphs.validation import StructureLabel

logger = logging.getLogger(__name__)
_LABEL_FILES = (*FILES, "ids")  # per-part label files (id_offsets holds local offsets there)


def write_part(
    part_dir: Path, items: list[SourceItem], base: int, cutoff: float, bond_cutoff: float
) -> dict:
    """Parse, build and write one part (the source's structures ``base, base + 1, ...``) to
    ``part_dir``, atomically; returns its summary (also in ``part.json``): ``n`` structures kept,
    ``bad`` ``[[source index, id, reason], ...]`` of the malformed ones, ``groups``, ``stats``
    (partial sums) and a content ``hash``."""
    tmp = part_dir.with_name(part_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = [*cache.FILES, *_LABEL_FILES]
    files = {name: open(tmp / f"{name}.bin", "wb") for name in names}
    stats, groups, bad, digest, n_ids = StatsAccumulator(), {}, [], hashlib.sha256(), 0
    try:
        files["id_offsets"].write(np.zeros(1, np.int64).tobytes())
        for j, item in enumerate(items):
            index = base + j
            try:
                s = parse_item(item)
                graph = atoms_to_graph(
                    s.atoms, cutoff, bond_cutoff, label=StructureLabel(s.atoms, index)
                )
            except (ValueError, TypeError, KeyError) as err:
                bad.append([index, item.id, str(err)])
                continue
            counts = cache.write_graph(files, graph, index)
            stats.add(s, int(counts[1]), int(counts[3]))
            _write_labels(files, s, groups.setdefault(s.group, len(groups)))
            encoded = s.id.encode()
            files["ids"].write(encoded)
            n_ids += len(encoded)
            files["id_offsets"].write(np.array([n_ids], np.int64).tobytes())
            for arr in (s.atoms.numbers, s.atoms.positions, s.atoms.cell.array, s.atoms.pbc):
                digest.update(np.ascontiguousarray(arr).tobytes())
    finally:
        for f in files.values():
            f.close()
    summary = {
        "n": stats.s["n_structures"],
        "bad": bad,
        "groups": list(groups),
        "stats": stats.to_dict(),
        "hash": digest.hexdigest(),
    }
    (tmp / "part.json").write_text(json.dumps(summary))
    os.replace(tmp, part_dir)
    return summary


def _write_labels(files: dict, s, group: int) -> None:
    n = s.n_atoms
    has = [x is not None for x in (s.energy, s.forces, s.stress, s.magmoms)]
    zeros = {"forces": np.zeros((n, 3)), "stress": np.zeros((3, 3)), "magmoms": np.zeros(n)}
    values = {
        "energy": np.array(s.energy or 0.0),
        "forces": s.forces if has[1] else zeros["forces"],
        "stress": s.stress if has[2] else zeros["stress"],
        "magmoms": s.magmoms if has[3] else zeros["magmoms"],
        "has": np.array(has),
        "group_index": np.array(group),
    }
    for name, value in values.items():
        files[name].write(np.ascontiguousarray(value, dtype=FILES[name][0]).tobytes())


def _parts(items: Iterable[SourceItem], size: int) -> Iterator[list[SourceItem]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _build_params(source: Path, cutoff: float, bond_cutoff: float, part_size: int) -> dict:
    st = source.stat()
    return {
        "format": DATASET_FORMAT,
        "source": str(source.resolve()),
        "source_bytes": st.st_size,
        "source_mtime": st.st_mtime,
        "cutoff": cutoff,
        "bond_cutoff": bond_cutoff,
        "part_size": part_size,
    }


def build_dataset(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    cutoff: float = DEFAULT_CUTOFF,
    bond_cutoff: float = DEFAULT_BOND_CUTOFF,
    workers: int = 0,
    part_size: int = 1000,
    skip_malformed: bool = False,
    progress: bool = True,
) -> DiskDataset:
    """Build the dataset of ``source`` (an `ase.io` file, an ASE ``.db`` or an MPtrj ``.json``)
    at ``out``; graphs at ``cutoff`` / ``bond_cutoff`` Å, ``workers`` processes (0: this one).

    An existing dataset at ``out`` built from the same source and settings is opened as it is;
    an interrupted build resumes. Malformed structures (bad labels, isolated atoms, unknown
    elements, ...) raise one `ValueError` listing their ids after every part is built, unless
    ``skip_malformed`` (then they are left out and listed in ``dataset.json``).
    """
    source, out = Path(source), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file")
    if part_size < 1:
        raise ValueError(f"part_size must be >= 1, got {part_size}")
    params = _build_params(source, cutoff, bond_cutoff, part_size)
    if is_dataset(out):
        dataset = DiskDataset(out)
        if dataset.meta.get("build") == params:
            logger.info("%s: already built from %s", out, source)
            return dataset
        raise ValueError(
            f"{out} already holds a dataset built from other data or settings; remove it or "
            "choose another OUT"
        )
    if out.exists():
        raise ValueError(f"{out} exists and is not a dataset; choose another OUT")
    work = out.with_name(out.name + ".partial")
    params_file = work / "build.json"
    if work.exists() and (
        not params_file.exists() or json.loads(params_file.read_text()) != params
    ):
        shutil.rmtree(work)  # another source or settings: nothing to reuse
    (work / "parts").mkdir(parents=True, exist_ok=True)
    params_file.write_text(json.dumps(params))
    done_file = work / "parts_done.json"
    if not done_file.exists():  # once the merge has begun, parts are consumed: no rebuild
        n_parts = _build_parts(source, work / "parts", params, workers, progress)
        n, bad = 0, []
        for k in range(n_parts):  # one part's summary at a time
            summary = json.loads((work / "parts" / f"{k:06d}" / "part.json").read_text())
            n, bad = n + summary["n"], bad + summary["bad"]
        done_file.write_text(json.dumps({"n_parts": n_parts, "n": n, "bad": bad}))
    done = json.loads(done_file.read_text())
    bad = done["bad"]
    if bad and not skip_malformed:
        listing = "; ".join(f"{i}: {r}" for _, i, r in bad[:20])
        more = "" if len(bad) <= 20 else f"; ... and {len(bad) - 20} more"
        raise ValueError(
            f"{source}: {len(bad)} malformed structure(s) (rerun with --skip-malformed to leave "
            f"them out; the built parts are kept): {listing}{more}"
        )
    if bad:
        logger.warning("%s: left out %d malformed structure(s): %s", source, len(bad), bad[:20])
    if not done["n"]:
        raise ValueError(f"{source}: no structures")
    merged = work / "merged"
    _merge(work / "parts", done, merged, params, progress)
    os.replace(merged, out)
    shutil.rmtree(work)
    return DiskDataset(out)


def _build_parts(source: Path, parts: Path, params: dict, workers: int, progress: bool) -> int:
    """Write every missing part; returns the number of parts."""
    args = (params["cutoff"], params["bond_cutoff"])
    size = params["part_size"]
    bar = tqdm(desc=f"data build {source.name}", unit="struct", disable=not progress)
    pool = None
    if workers > 0:
        pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    pending: set = set()
    n_parts = 0
    try:
        for k, items in enumerate(_parts(iter_source(source), size)):
            n_parts = k + 1
            part_dir = parts / f"{k:06d}"
            if (part_dir / "part.json").exists():
                bar.update(len(items))  # built before a kill
                continue
            if pool is None:
                write_part(part_dir, items, k * size, *args)
                bar.update(len(items))
                continue
            future = pool.submit(write_part, part_dir, items, k * size, *args)
            future.n_items = len(items)
            pending.add(future)
            while len(pending) >= 2 * workers:  # bounded: the source is read as parts finish
                pending = _collect(pending, bar, cf.FIRST_COMPLETED)
        while pending:
            pending = _collect(pending, bar, cf.ALL_COMPLETED)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        bar.close()
    return n_parts


def _collect(pending: set, bar, when) -> set:
    done, pending = cf.wait(pending, return_when=when)
    for future in done:
        future.result()  # re-raise a worker's error
        bar.update(future.n_items)
    return pending


def _merge(parts: Path, done: dict, out: Path, params: dict, progress: bool) -> None:
    """Append the parts in order to a dataset directory ``out``, deleting each part once it is
    in (so the build needs about one dataset of extra disk). Resumable: ``progress.json`` records
    the parts merged and every file's length after them, and a rerun truncates to those lengths.
    Then the SHA-256 of every file and ``dataset.json`` (last)."""
    (out / "graphs").mkdir(parents=True, exist_ok=True)
    paths = {name: f"graphs/{name}.bin" for name in cache.FILES}
    paths.update({name: f"{name}.bin" for name in _LABEL_FILES})
    paths["groups"] = "groups.jsonl"
    progress_file = out / "progress.json"
    if progress_file.exists():
        state = json.loads(progress_file.read_text())
    else:
        state = {"next": 0, "lengths": dict.fromkeys(paths, 0), "n_ids": 0, "hashes": []}
        state["stats"] = StatsAccumulator().to_dict()
    for name, p in paths.items():
        with open(out / p, "ab") as f:
            f.truncate(state["lengths"][name])
    with open(out / paths["groups"]) as f:
        group_ids = {json.loads(line): k for k, line in enumerate(f)}
    stats = StatsAccumulator.merge([state["stats"]])
    files = {name: open(out / p, "ab") for name, p in paths.items()}
    try:
        if state["next"] == 0 and not state["lengths"]["id_offsets"]:
            files["id_offsets"].write(np.zeros(1, np.int64).tobytes())
        bar = tqdm(total=done["n_parts"], initial=state["next"], desc="data merge", unit="part",
                   disable=not progress)  # fmt: skip
        for k in range(state["next"], done["n_parts"]):
            part = parts / f"{k:06d}"
            summary = json.loads((part / "part.json").read_text())
            for name in paths:
                if name not in ("id_offsets", "group_index", "groups"):
                    with open(part / f"{name}.bin", "rb") as f:
                        shutil.copyfileobj(f, files[name], 1 << 24)
            local = np.fromfile(part / "id_offsets.bin", np.int64)
            files["id_offsets"].write((local[1:] + state["n_ids"]).tobytes())
            state["n_ids"] += int(local[-1])
            for g in summary["groups"]:
                if g not in group_ids:
                    group_ids[g] = len(group_ids)
                    files["groups"].write((json.dumps(g) + "\n").encode())
            mapping = np.array([group_ids[g] for g in summary["groups"]], np.int32)
            group_index = np.fromfile(part / "group_index.bin", np.int32)
            files["group_index"].write(mapping[group_index].astype(np.int32).tobytes())
            stats = StatsAccumulator.merge([stats.to_dict(), summary["stats"]])
            state["hashes"].append(summary["hash"])
            for f in files.values():
                f.flush()
                os.fsync(f.fileno())
            state.update(next=k + 1, stats=stats.to_dict())
            state["lengths"] = {name: files[name].tell() for name in paths}
            tmp = progress_file.with_name("progress.json.tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, progress_file)
            shutil.rmtree(part)
            bar.update(1)
        bar.close()
    finally:
        for f in files.values():
            f.close()
    (out / "groups.json").write_text(json.dumps(list(group_ids)))
    (out / paths.pop("groups")).unlink()
    progress_file.unlink()
    graph_meta = {
        "format": cache.FORMAT_VERSION,
        "cutoff": params["cutoff"],
        "bond_cutoff": params["bond_cutoff"],
        "n_graphs": done["n"],
        "content_hash": hashlib.sha256("".join(state["hashes"]).encode()).hexdigest(),
        "dropped": [[i, r] for i, _, r in done["bad"]],
    }
    (out / "graphs" / "meta.json").write_text(json.dumps(graph_meta, indent=1))
    names = [*paths.values(), "groups.json"]
    meta = {
        "format": DATASET_FORMAT,
        "n_structures": done["n"],
        "build": params,
        "stats": stats.finish(),
        "malformed": {i: r for _, i, r in done["bad"]},
        "files": {p: (out / p).stat().st_size for p in names},
        "sha256": {
            p: file_sha256(out / p) for p in tqdm(names, desc="data sha256", disable=not progress)
        },
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))
