"""``equijax data build SOURCE OUT`` and ``equijax data check OUT``: the on-disk training
dataset (`equijax.graphs.dataset`) that ``data.source: OUT`` streams from."""

from __future__ import annotations

import argparse
import json
import os


def add_data_parser(sub, handler) -> None:
    """The ``data`` subcommand and its ``build`` / ``check`` actions on ``sub``."""
    d = sub.add_parser("data", help="build and check on-disk training datasets (MPtrj scale)")
    dsub = d.add_subparsers(dest="data", required=True)
    b = dsub.add_parser(
        "build",
        help="structures -> graphs + labels + statistics on disk (parallel, resumable)",
        description="Build the dataset of SOURCE at OUT; rerun the same command after a kill "
        "to resume. Train on it with data.source=OUT.",
    )
    b.add_argument("source", help="an ase.io file (extxyz, traj, ...), an ASE .db, or MPtrj .json")
    b.add_argument("out", help="the dataset directory to write")
    b.add_argument(
        "--config",
        default=None,
        help="take the graph cutoffs from this experiment config's model (else --cutoff, "
        "--bond-cutoff)",
    )
    b.add_argument("--cutoff", type=float, default=None, help="atom-graph cutoff, Å (default 6)")
    b.add_argument("--bond-cutoff", type=float, default=None, help="bond-graph cutoff, Å (3)")
    b.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: all cores; 0 builds in this process)",
    )
    b.add_argument("--part-size", type=int, default=1000, help="structures per resumable part")
    b.add_argument(
        "--skip-malformed",
        action="store_true",
        help="leave malformed structures out (listed in dataset.json) instead of failing",
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    b.set_defaults(func=handler("cmd_data_build"))
    c = dsub.add_parser("check", help="verify a built dataset's files against their SHA-256")
    c.add_argument("out", help="the dataset directory")
    c.set_defaults(func=handler("cmd_data_check"))


def cmd_data_build(args: argparse.Namespace) -> int:
    from equijax.cli.errors import UserInputError
    from equijax.graphs.build import DEFAULT_BOND_CUTOFF, DEFAULT_CUTOFF
    from equijax.graphs.dataset_build import build_dataset
    from equijax.training.config import load_config
    from equijax.training.data_source import graph_cutoffs

    if args.workers < 0:
        raise SystemExit(f"--workers must be >= 0, got {args.workers}")
    cutoff, bond_cutoff = DEFAULT_CUTOFF, DEFAULT_BOND_CUTOFF
    if args.config:
        if args.cutoff is not None or args.bond_cutoff is not None:
            raise SystemExit("give either --config or --cutoff/--bond-cutoff, not both")
        cutoff, bond_cutoff = graph_cutoffs(load_config(args.config).model)
    cutoff = cutoff if args.cutoff is None else args.cutoff
    bond_cutoff = bond_cutoff if args.bond_cutoff is None else args.bond_cutoff
    try:
        dataset = build_dataset(
            args.source,
            args.out,
            cutoff=cutoff,
            bond_cutoff=bond_cutoff,
            workers=args.workers,
            part_size=args.part_size,
            skip_malformed=args.skip_malformed,
            progress=not args.no_progress,
        )
    except ValueError as err:
        raise UserInputError(str(err)) from err
    stats = dataset.stats
    summary = {
        "out": str(dataset.path),
        "structures": len(dataset),
        "malformed_left_out": len(dataset.meta["malformed"]),
        "cutoffs": [dataset.cutoff, dataset.bond_cutoff],
        "bytes": sum(dataset.meta["files"].values()),
        **{k: stats[k] for k in ("avg_num_neighbors", "energy_per_atom_mean", "force_rms")},
    }
    print(json.dumps(summary, indent=1))
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from equijax.cli.errors import UserInputError
    from equijax.graphs.dataset import DiskDataset

    try:
        dataset = DiskDataset(args.out)
        dataset.verify()
    except ValueError as err:
        raise UserInputError(str(err)) from err
    print(f"{args.out}: {len(dataset)} structures, every file matches its SHA-256")
    return 0
