"""What XLA made of a jitted function: a summary of its optimized HLO (kernels, fusions, and
the gathers, scatters and dots left outside fusions).

On a GPU every instruction of the entry computation other than bookkeeping (parameters,
constants, tuples, bitcasts) is roughly one kernel launch, and a gather or scatter left outside a
fusion is a round trip through memory that XLA did not fuse with its producer or consumer. That
is the check FastCHGNet-style fusion asks for: gather → MLP → scatter should sit in few kernels.
"""

from __future__ import annotations

import re
from collections import Counter

BOOKKEEPING = frozenset(
    {
        "parameter",
        "constant",
        "tuple",
        "get-tuple-element",
        "bitcast",
        "copy-start",
        "copy-done",
        "after-all",
        "opt-barrier",
        "partition-id",
        "replica-id",
    }
)
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+ = (?:\(.*?\)|\S+) ([a-z][a-z0-9\-]*)\(")
_ASSIGNMENT = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+ = ")
_COMPUTATION = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+) \(.*\{\s*$")
_FUSION_KIND = re.compile(r"kind=(k\w+)")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_TO_APPLY = re.compile(r"to_apply=%?([\w.\-]+)")
_GEMM_TARGET = re.compile(r'custom_call_target="[^"]*(?:gemm|matmul)', re.IGNORECASE)
WATCHED = ("gather", "scatter", "dot")


def computations(hlo_text: str) -> tuple[str, dict[str, list[str]]]:
    """``(entry_name, {name: instruction lines})`` of every computation in HLO module text."""
    out: dict[str, list[str]] = {}
    entry, current = None, None
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            current = header.group(2)
            out[current] = []
            if header.group(1):
                entry = current
        elif line.startswith("}"):
            current = None
        elif current is not None:
            out[current].append(line)
    if entry is None:
        raise ValueError("no ENTRY computation in this HLO text")
    return entry, out


def _opcodes(lines: list[str]) -> tuple[list[tuple[str, str]], int]:
    """(opcode, line) of each non-bookkeeping instruction, and how many instruction lines did
    not parse (they are counted, never dropped silently)."""
    found, unparsed = [], 0
    for line in lines:
        match = _INSTRUCTION.match(line)
        if match is None:
            unparsed += bool(_ASSIGNMENT.match(line))
        elif match.group(1) not in BOOKKEEPING:
            found.append((match.group(1), line))
    return found, unparsed


def _kernels(bodies: dict[str, list[str]], name: str, seen: frozenset = frozenset()):
    """(opcode, line) of the kernels of computation ``name``; a ``call`` (e.g. a GPU command
    buffer, which launches its computation's kernels as one CUDA graph) is replaced by the
    kernels of the computation it calls."""
    found, unparsed = _opcodes(bodies.get(name, []))
    out = []
    for opcode, line in found:
        called = _TO_APPLY.search(line) if opcode == "call" else None
        if called and called.group(1) not in seen:
            inner, inner_unparsed = _kernels(bodies, called.group(1), seen | {name})
            out += inner
            unparsed += inner_unparsed
        else:
            out.append((opcode, line))
    return out, unparsed


def hlo_summary(hlo_text: str) -> dict:
    """Counts over the entry computation of optimized HLO text (``compiled.as_text()``).

    Returns ``kernels`` (non-bookkeeping instructions, about one launch each on a GPU; the
    computations of ``call`` instructions, e.g. command buffers, are counted inside; a ``while``
    counts as one and its body is not expanded), ``fusions`` with ``fusion_kinds`` (kLoop,
    kInput, kOutput, kCustom counts), ``unfused`` (a count per opcode of the other kernels,
    e.g. ``custom-call``, ``all-reduce``), ``alone`` (per opcode of `WATCHED`: kernels doing
    only that op: unfused, a one-op fusion, or a GEMM library call) and ``fused`` (per opcode
    of `WATCHED`: fusions where it shares the kernel with other ops), and ``unparsed``
    (instruction lines this parser could not read; non-zero means the counts are low)."""
    entry, bodies = computations(hlo_text)
    unfused: Counter = Counter()
    kinds: Counter = Counter()
    alone: Counter = Counter()
    fused: Counter = Counter()
    kernels, unparsed = _kernels(bodies, entry)
    for opcode, line in kernels:
        if opcode != "fusion":
            unfused[opcode] += 1
            inner = ["dot"] if opcode == "custom-call" and _GEMM_TARGET.search(line) else [opcode]
        else:
            kind = _FUSION_KIND.search(line)
            kinds[kind.group(1) if kind else "unknown"] += 1
            called = _CALLS.search(line)
            inner = [op for op, _ in _opcodes(bodies.get(called.group(1), []))[0]] if called else []
        for watched in WATCHED:
            hits = sum(op.startswith(watched) for op in inner)
            if hits and len(inner) == hits:
                alone[watched] += hits
            elif hits:
                fused[watched] += hits
    fusions = sum(kinds.values())
    return {
        "kernels": fusions + sum(unfused.values()),
        "fusions": fusions,
        "fusion_kinds": dict(sorted(kinds.items())),
        "unfused": dict(sorted(unfused.items())),
        "alone": dict(sorted(alone.items())),
        "fused": dict(sorted(fused.items())),
        "unparsed": unparsed,
    }


def compiled_summary(jitted, *args) -> dict:
    """`hlo_summary` of ``jitted`` (a `jax.jit` function) compiled for ``args`` on the default
    backend (lowers and compiles once more; the jit cache is not used). Fusion decisions differ
    between CPU and GPU: read a GPU's summary for GPU kernels."""
    return hlo_summary(jitted.lower(*args).compile().as_text())
