"""The `equijax` command line: `equijax demo`, `equijax bench graphs|chgnet-infer|chgnet-train|tp|model`,
`equijax train`, `equijax sweep`, `equijax predict FILE...`, `equijax evaluate RUN_DIR...`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from equijax.bench import chgnet_infer, chgnet_train, graphs, model, tp, tp_methods
from equijax.models import registry
from equijax.nn.precision import PRECISIONS
from equijax.predict import predict_files
from equijax.sweep import collect, expand, load_spec, run_sweep
from equijax.sweep.runner import resolved_config
from equijax.sweep.spec import SweepError
from equijax.table import Table
from equijax.training.config import ConfigError, load_config
from equijax.training.evaluate import evaluate_run, format_errors
from equijax.training.loop import train


def _single_thread() -> None:
    """Pin numeric libraries to one thread, as the graph benchmark's anchor was measured."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _bench_graphs(args) -> int:
    graphs.run(
        out=args.out,
        rounds=args.rounds,
        reference=not args.no_reference,
        do_calibrate=args.calibrate,
        batch_size=args.batch_size,
        n_devices=args.devices,
        global_batch=args.global_batch,
        limit=args.limit,
    )
    return 0


def _bench_chgnet_infer(args) -> int:
    chgnet_infer.run(
        out=args.out,
        batch_size=args.batch_size,
        steps=args.steps,
        limit=args.limit,
        reference=not args.no_reference,
    )
    return 0


def _bench_chgnet_train(args) -> int:
    forces = tuple(args.forces.split(","))
    if any(f not in chgnet_train.FORCES for f in forces):
        raise SystemExit(
            f"--forces takes a subset of {','.join(chgnet_train.FORCES)}, got {args.forces}"
        )
    precisions = tuple(args.precision.split(","))
    if any(p not in PRECISIONS for p in precisions):
        raise SystemExit(
            f"--precision takes a subset of {','.join(PRECISIONS)}, got {args.precision}"
        )
    if args.conservative_every < 0:
        raise SystemExit(f"--conservative-every must be >= 0, got {args.conservative_every}")
    chgnet_train.run(
        out=args.out,
        batch_size=args.batch_size,
        steps=args.steps,
        limit=args.limit,
        reference=not args.no_reference,
        forces=forces,
        precisions=precisions,
        breakdown=args.breakdown,
        conservative_every=args.conservative_every,
        remat=args.remat,
        concat_messages=args.concat_messages,
        unfused_gates=args.unfused_gates,
        memory=args.memory,
    )
    return 0


def _bench_model(args) -> int:
    try:
        model.run(
            args.config,
            args.overrides,
            batch_size=args.batch_size,
            limit=args.limit,
            repeats=args.repeats,
            out=args.out,
        )
    except ValueError as err:
        raise SystemExit(f"equijax bench model: {err}") from None
    return 0


def _int_list(text: str) -> list[int]:
    """ "1,2,3" or "1-6" -> list of ints (argparse type)."""
    try:
        if "-" in text:
            lo, hi = text.split("-")
            return list(range(int(lo), int(hi) + 1))
        return [int(v) for v in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected '1,2,3' or '1-6', got {text!r}") from err


def _bench_tp(args) -> int:
    methods = None
    if args.methods:
        methods = args.methods.split(",")
        known = tp_methods.EQUIJAX_METHODS + tp_methods.REFERENCE_METHODS
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise SystemExit(f"unknown method(s) {unknown}; choose from {', '.join(known)}")
    modes = args.modes.split(",")
    if any(m not in tp.MODES for m in modes):
        raise SystemExit(f"--modes takes a subset of {','.join(tp.MODES)}, got {args.modes}")
    tp.run(
        lmaxes=args.lmax,
        batch=args.batch,
        channels=args.channels,
        methods=methods,
        repeats=args.repeats,
        modes=modes,
        out=args.out,
        plot_path=args.plot,
        e3nn_cg_lmax=args.e3nn_cg_lmax,
        cue_lmax=args.cue_lmax,
    )
    return 0


def _predict(args) -> int:
    predict_files(
        args.files,
        model=args.model,
        output_format=args.format,
        out=args.out,
        batch_size=args.batch_size,
    )
    return 0


def _evaluate(args) -> int:
    if args.batch_size < 1:
        raise SystemExit(f"--batch-size must be >= 1, got {args.batch_size}")
    rows = {}
    for run_dir in args.runs:
        rows[run_dir] = evaluate_run(
            run_dir,
            split=args.split,
            which=args.which,
            forces=args.forces,
            batch_size=args.batch_size,
        )
    print(f"{args.split} split, {args.which} checkpoint, forces: {args.forces or 'as trained'}")
    print(format_errors(rows))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {"split": args.split, "which": args.which, "forces": args.forces, "runs": rows},
                indent=1,
            )
        )
    return 0


def _train(args) -> int:
    config = load_config(args.config, args.overrides)
    result = train(config, resume=args.resume)
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "steps",
                    "val",
                    "test",
                    "baseline_val",
                    "structures_per_s",
                    "data_wait_fraction",
                )
            },
            indent=1,
            default=float,
        )
    )
    return 0


def _sweep(args) -> int:
    if args.collect_only:
        result = collect(args.collect_only)
        print(result["paths"]["markdown"].read_text())
        return 0
    spec = load_spec(
        args.config,
        grid=args.grid,
        zip_axes=args.zip,
        overrides=args.overrides,
        dir=args.dir,
        jobs=args.jobs,
        launcher=args.launcher,
        task=args.task,
    )
    points = expand(spec)
    print(f"sweep: {len(points)} point(s) in {spec.dir} ({spec.launcher}, {spec.jobs} at a time)")
    if args.dry_run:  # resolve every point's config too: a bad key fails here, naming it
        for p in points:
            resolved_config(spec, p, Path(spec.dir) / p.name)
            print(f"  {p.name}: {' '.join(p.overrides)}")
        return 0
    outcome = run_sweep(spec, wait=not args.no_wait)
    if outcome.submitted and args.no_wait:
        print(f"collect later with: equijax sweep --collect-only {spec.dir}")
        return 0
    result = collect(spec.dir)
    print(result["paths"]["markdown"].read_text())
    print(
        f"ran {len(outcome.ran)}, skipped {len(outcome.skipped)} finished, failed "
        f"{len(outcome.failed)}; table: {result['paths']['csv']}, {result['paths']['markdown']}"
        + (f", plot: {result['paths']['plot']}" if "plot" in result["paths"] else "")
    )
    return 1 if outcome.failed else 0


def _demo(args) -> int:
    out = Path(args.out)
    print("equijax demo 1/4: crystal graphs for the 256 packaged MPtrj-like structures\n")
    graphs.run(out=str(out / "graphs.json"), rounds=2, reference=True)
    print(
        "\nequijax demo 2/4: pretrained CHGNet 0.3.0 inference (energy, forces, stress, magmoms)"
        " against the PyTorch chgnet on the first 24 structures\n"
    )
    chgnet_infer.run(out=str(out / "chgnet_infer.json"), batch_size=8, steps=3, limit=24)
    print(
        "\nequijax demo 3/4: tensor products (CG, Gaunt grid/Fourier, vector Gaunt) against "
        "e3nn-jax and cuequivariance, L = 1..3, N = 1000, C = 16\n"
    )
    tp.run(
        lmaxes=[1, 2, 3],
        modes=("fwd", "fwdbwd"),
        cue_lmax=1,
        out=str(out / "tp.json"),
        plot_path=str(out / "tp.png"),
    )
    print(
        "\nequijax demo 4/4: train a small CHGNet on generated EMT data (config chgnet_emt_small)\n"
    )
    config = load_config("chgnet_emt_small", [f"train.run_dir={out / 'chgnet_emt_small'}"])
    result = train(config)
    base = result["baseline_val"]
    table = Table(
        "validation MAE after training vs the per-element linear baseline",
        ["target", "CHGNet (val)", "CHGNet (test)", "baseline (val)"],
    )
    table.add(
        "energy (eV/atom)",
        f"{result['val']['mae_energy']:.4f}",
        f"{result['test']['mae_energy']:.4f}",
        f"{base['energy_mae_per_atom']:.4f}",
    )
    table.add(
        "forces (eV/Å)",
        f"{result['val']['mae_forces']:.4f}",
        f"{result['test']['mae_forces']:.4f}",
        f"{base['force_mae_zero']:.4f} (zero forces)",
    )
    table.add(
        "stress (GPa)",
        f"{result['val']['mae_stress']:.3f}",
        f"{result['test']['mae_stress']:.3f}",
        f"{base['stress_mae_zero']:.3f} (zero stress)",
    )
    table.print()
    print(
        f"training: {result['steps']} steps, {result['structures_per_s']:.1f} structures/s, "
        f"data wait {result['data_wait_fraction']:.1%}; curves: {result['run_dir']}/learning_curves.png"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equijax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the main job on embedded defaults")
    demo.add_argument("--out", default="results/demo", help="folder for the JSON results")
    demo.set_defaults(func=_demo)

    bench = sub.add_parser("bench", help="benchmarks (print a table, write JSON)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    g = bench_sub.add_parser(
        "graphs", help="graph construction vs CHGNet's converter, padding, balance"
    )
    g.add_argument("--out", default="results/bench_graphs.json", help="JSON output path")
    g.add_argument("--rounds", type=int, default=3, help="timed rounds (best is reported)")
    g.add_argument("--no-reference", action="store_true", help="skip the PyTorch chgnet converter")
    g.add_argument("--calibrate", action="store_true", help="fit the cost model on the proxy step")
    g.add_argument(
        "--batch-size", type=int, default=40, help="graphs per batch for the padding report"
    )
    g.add_argument("--devices", type=int, default=8, help="devices for the load-balance report")
    g.add_argument(
        "--global-batch",
        type=int,
        default=64,
        help="graphs per step split over the devices in the load-balance report",
    )
    g.add_argument("--limit", type=int, default=None, help="use only the first N structures")
    g.set_defaults(func=_bench_graphs)

    c = bench_sub.add_parser(
        "chgnet-infer", help="pretrained CHGNet efsm inference vs PyTorch chgnet"
    )
    c.add_argument("--out", default="results/bench_chgnet_infer.json", help="JSON output path")
    c.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="structures per batch (default 40 on GPU, 8 on CPU)",
    )
    c.add_argument("--steps", type=int, default=6, help="timed batches (median is reported)")
    c.add_argument("--limit", type=int, default=None, help="use only the first N structures")
    c.add_argument("--no-reference", action="store_true", help="skip the PyTorch chgnet")
    c.set_defaults(func=_bench_chgnet_infer)

    ct = bench_sub.add_parser("chgnet-train", help="CHGNet training steps vs PyTorch chgnet")
    ct.add_argument("--out", default="results/bench_chgnet_train.json", help="JSON output path")
    ct.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="structures per step (default 40 on GPU, 4 on CPU)",
    )
    ct.add_argument("--steps", type=int, default=5, help="timed steps (median is reported)")
    ct.add_argument("--limit", type=int, default=None, help="structures to use")
    ct.add_argument("--no-reference", action="store_true", help="skip the PyTorch chgnet")
    ct.add_argument(
        "--forces",
        default="conservative,direct",
        help="equijax force heads to time, comma-separated: conservative (autodiff, as "
        "the reference), direct (readout heads, no second derivatives), "
        "direct-angle (direct with the three-body stress term), "
        "direct-physical (three-body forces, pair energy, stress their virial); "
        "default: "
        "conservative,direct",
    )
    ct.add_argument(
        "--precision",
        default="default",
        help="matmul precisions to time, comma-separated: default (JAX's: TF32 on "
        "recent GPUs), float32 (as PyTorch's default), tf32, bf16 (emulated "
        "off GPU: accuracy only, not speed)",
    )
    ct.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the step's stages (forward, forces/stress, param gradient + "
        "update) and summarise its optimized HLO (kernels, fusions)",
    )
    ct.add_argument(
        "--conservative-every",
        type=int,
        default=0,
        metavar="K",
        help="also time each direct kind of --forces (plain direct heads if none) "
        "trained with a conservative step every K steps "
        "(train.conservative_every; mean over whole cycles)",
    )
    ct.add_argument(
        "--remat",
        action="store_true",
        help="also time each run with rematerialised blocks (model.remat: less "
        "activation memory, more compute)",
    )
    ct.add_argument(
        "--concat-messages",
        action="store_true",
        help="also time each run with CHGNet's plain messages (concatenate, then "
        "multiply: factorized_messages=False), the work the default bypasses",
    )
    ct.add_argument(
        "--unfused-gates",
        action="store_true",
        help="also time each run with the gated MLPs' core and gate first layers "
        "apart (fused_gates=False): two gathers per message part, not one",
    )
    ct.add_argument(
        "--memory",
        action="store_true",
        help="also report memory: XLA's plan of each step (compile only) and the "
        "measured memory against the reference (CPU: one step's resident growth "
        "for both; GPU: device peaks)",
    )
    ct.set_defaults(func=_bench_chgnet_train)

    tpb = bench_sub.add_parser(
        "tp", help="tensor products: equijax kinds vs e3nn-jax and cuequivariance"
    )
    tpb.add_argument(
        "--lmax",
        type=_int_list,
        default=None,
        help="L values, '1-6' or '1,3,5' (default 1-6 on GPU, 1-4 on CPU)",
    )
    tpb.add_argument(
        "--batch", type=int, default=None, help="N (default 10000 on GPU, 1000 on CPU)"
    )
    tpb.add_argument("--channels", type=int, default=None, help="C (default 32 on GPU, 16 on CPU)")
    tpb.add_argument(
        "--methods",
        default=None,
        help="comma list from cg,gaunt_grid,gaunt_grid:grid,gaunt_fourier,vector_gaunt,"
        "e3nn_cg,e3nn_s2grid,cue (default all available)",
    )
    tpb.add_argument("--modes", default="fwd,fwdbwd,bwdbwd", help="subset of fwd,fwdbwd,bwdbwd")
    tpb.add_argument(
        "--repeats", type=int, default=None, help="timed calls (default 20 GPU, 5 CPU)"
    )
    tpb.add_argument("--e3nn-cg-lmax", type=int, default=4, help="skip e3nn's CG above this L")
    tpb.add_argument(
        "--cue-lmax",
        type=int,
        default=None,
        help="skip cuequivariance above this L (default 6 on GPU, 2 on CPU)",
    )
    tpb.add_argument("--out", default="results/bench_tp.json", help="JSON output path")
    tpb.add_argument("--plot", default="results/bench_tp.png", help="PNG plot path ('' for none)")
    tpb.set_defaults(func=_bench_tp)

    bm = bench_sub.add_parser(
        "model",
        help="an equivariant model from a training config vs the "
        "same model on e3nn-jax's tensor_product",
    )
    bm.add_argument(
        "--config",
        default="equivariant_emt_small",
        help="experiment YAML or packaged name with model.name=equivariant",
    )
    bm.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="structures per batch (default: the config's data.batch_size)",
    )
    bm.add_argument("--limit", type=int, default=32, help="structures to use")
    bm.add_argument("--repeats", type=int, default=5, help="timed calls per batch (median)")
    bm.add_argument("--out", default="results/bench_model.json", help="JSON output path")
    bm.add_argument("overrides", nargs="*", help="config overrides, e.g. model.tp=cg model.lmax=3")
    bm.set_defaults(func=_bench_model)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("--config", default=None, help="YAML experiment config (configs/experiment/...)")
    t.add_argument(
        "--resume", action="store_true", help="continue from the run's latest checkpoint"
    )
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=3")
    t.set_defaults(func=_train)

    sw = sub.add_parser(
        "sweep",
        help="run a grid/zip sweep of an experiment, skip finished points, "
        "collect a results table and plots",
    )
    sw.add_argument(
        "--config",
        default=None,
        help="experiment YAML or packaged name; its `sweep:` block gives default axes",
    )
    sw.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=A,B",
        help="a grid axis in Hydra's sweep syntax (repeatable; range(1,4) works)",
    )
    sw.add_argument(
        "--zip",
        action="append",
        default=[],
        metavar="KEY=A,B",
        help="a zip axis: zip axes advance together (repeatable, equal lengths)",
    )
    sw.add_argument("--dir", default=None, help="sweep directory (default runs/sweeps/<config>)")
    sw.add_argument("--jobs", type=int, default=None, help="points run at a time (default 1)")
    sw.add_argument(
        "--launcher",
        default=None,
        choices=["local", "slurm", "submitit-local"],
        help="local subprocesses (default), SLURM via submitit, or submitit's local "
        "executor; SLURM parameters go in the sweep block's `slurm:` mapping",
    )
    sw.add_argument(
        "--task",
        default=None,
        choices=["train", "bench-tp"],
        help="what each point runs (default train)",
    )
    sw.add_argument("--no-wait", action="store_true", help="submit to SLURM and return")
    sw.add_argument("--dry-run", action="store_true", help="list the points and stop")
    sw.add_argument(
        "--collect-only",
        default=None,
        metavar="DIR",
        help="only (re)build the results table and plots of a sweep directory",
    )
    sw.add_argument("overrides", nargs="*", help="fixed key=value / group=option overrides")
    sw.set_defaults(func=_sweep)

    ev = sub.add_parser("evaluate", help="MAEs of trained runs on their own train/val/test split")
    ev.add_argument("runs", nargs="+", help="run directories of `equijax train`")
    ev.add_argument("--split", choices=["train", "val", "test"], default="val", help="which split")
    ev.add_argument("--which", choices=["best", "latest"], default="best", help="which checkpoint")
    ev.add_argument(
        "--forces",
        choices=["conservative"],
        default=None,
        help="evaluate a direct-heads model with its energy's gradients as forces and "
        "stress (default: as trained)",
    )
    ev.add_argument("--batch-size", type=int, default=16, help="structures per batch")
    ev.add_argument("--out", default=None, help="also write the results as JSON here")
    ev.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="energy, forces, stress, magmoms for structure files")
    p.add_argument("files", nargs="+", help="structure files in any ase.io format (all frames)")
    p.add_argument(
        "--model",
        default="chgnet-0.3.0",
        help=f"pretrained model ({', '.join(registry.available_pretrained())}; the "
        "CHGNet versions 0.3.0 and 0.2.0 alone work too)",
    )
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format")
    p.add_argument("--out", default=None, help="write to this file instead of stdout")
    p.add_argument("--batch-size", type=int, default=40, help="structures per batch")
    p.set_defaults(func=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `equijax` command."""
    _single_thread()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, SweepError, FileNotFoundError) as err:  # user errors: no traceback
        parser.exit(2, f"equijax {args.command}: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
