"""The handlers of the `equijax` subcommands: each takes the parsed arguments and returns the
exit code (see `equijax.cli.parser` for the arguments)."""

from __future__ import annotations

import json
from pathlib import Path

from equijax.bench import chgnet_infer, chgnet_train, graphs, model, tp, tp_methods, tp_tune
from equijax.cli.data import cmd_data_build, cmd_data_check  # noqa: F401 - handlers
from equijax.cli.errors import UserInputError
from equijax.nn.precision import PRECISIONS
from equijax.predict import predict_files
from equijax.sweep import collect, expand, load_spec, run_sweep
from equijax.sweep.runner import resolved_config
from equijax.sweep.spec import SweepError
from equijax.table import Table
from equijax.training.config import ConfigError, load_config
from equijax.training.evaluate import evaluate_run, format_errors
from equijax.training.loop import train


def cmd_bench_graphs(args) -> int:
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


def cmd_bench_chgnet_infer(args) -> int:
    chgnet_infer.run(
        out=args.out,
        batch_size=args.batch_size,
        steps=args.steps,
        limit=args.limit,
        reference=not args.no_reference,
    )
    return 0


def cmd_bench_chgnet_train(args) -> int:
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


def cmd_bench_model(args) -> int:
    try:
        model.run(
            args.config,
            args.overrides,
            batch_size=args.batch_size,
            limit=args.limit,
            repeats=args.repeats,
            out=args.out,
            tps=args.tps.split(",") if args.tps else None,
        )
    except ValueError as err:
        raise SystemExit(f"equijax bench model: {err}") from None
    return 0


def cmd_bench_md(args) -> int:
    from equijax.bench import md

    dynamics = tuple(args.dynamics.split(","))
    if not set(dynamics) <= set(md.DYNAMICS):
        raise SystemExit(f"--dynamics takes a subset of nve,nvt, got {args.dynamics}")
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    bad = [n for n in args.atoms if n < 4 or n % 4]
    if bad:
        raise SystemExit(f"--atoms: fcc Cu cells need multiples of 4 atoms, got {bad}")
    md.run(
        sizes=tuple(args.atoms),
        dynamics=dynamics,
        steps=args.steps,
        warmup=args.warmup,
        reference=not args.no_reference,
        reference_max_atoms=args.reference_max_atoms,
        limit_gb=args.limit_gb,
        out=args.out,
    )
    return 0


def cmd_bench_train_quality(args) -> int:
    from equijax.bench import train_quality

    datasets = tuple(args.data.split(","))
    sides = tuple(args.sides.split(","))
    if not set(datasets) <= set(train_quality.DATASETS) or not set(sides) <= {"equijax", "chgnet"}:
        raise SystemExit(
            f"--data takes a subset of {','.join(train_quality.DATASETS)} and --sides of "
            f"equijax,chgnet; got {args.data!r}, {args.sides!r}"
        )
    n_structures = {}
    for item in (args.n_structures or "").split(","):
        if item:
            name, _, count = item.rpartition("=")
            for d in [name] if name else datasets:
                n_structures[d] = int(count)
    train_quality.run(
        out=args.out,
        datasets=datasets,
        seeds=tuple(args.seeds),
        epochs=args.epochs,
        n_structures=n_structures,
        sides=sides,
        overrides=tuple(args.overrides),
        run_root=args.run_root,
    )
    return 0


def cmd_bench_sevennet(args) -> int:
    from equijax.bench import sevennet

    modes = tuple(args.modes.split(","))
    if not set(modes) <= {"md", "infer", "train"}:
        raise SystemExit(f"--modes takes a subset of md,infer,train, got {args.modes}")
    try:
        sevennet.run(
            args.model,
            batch_size=args.batch_size,
            md_atoms=tuple(args.md_atoms),
            steps=args.steps,
            reference=not args.no_reference,
            modes=modes,
            out=args.out,
        )
    except ValueError as err:
        raise SystemExit(f"equijax bench sevennet: {err}") from None
    return 0


def cmd_bench_mace(args) -> int:
    from equijax.bench import mace

    modes = tuple(args.only.split(","))
    if not set(modes) <= {"md", "infer", "train"}:
        raise SystemExit(f"--only takes a subset of md,infer,train, got {args.only}")
    try:
        mace.run(
            args.size,
            batch_size=args.batch_size,
            md_atoms=tuple(args.md_atoms),
            steps=args.steps,
            reference=not args.no_reference,
            modes=modes,
            out=args.out,
        )
    except ValueError as err:
        raise SystemExit(f"equijax bench mace: {err}") from None
    return 0


def cmd_trim_radial(args) -> int:
    import ase.io

    from equijax.bench.common import load_benchmark_structures
    from equijax.models import registry
    from equijax.models.nequip import NequIP
    from equijax.models.nequip.trim import trim_radial
    from equijax.models.saved import save_model

    try:
        module, params = registry.load_pretrained(args.model)
        if not isinstance(module, NequIP):
            raise ValueError(f"{args.model} is not a NequIP/SevenNet model")
        if args.structures:
            structures = ase.io.read(args.structures, f":{args.limit}")
        else:
            structures = load_benchmark_structures(args.limit)
        trimmed, new_params, report = trim_radial(
            module, params, structures, collapse_readout=args.collapse_readout
        )
    except (ValueError, OSError) as err:
        raise SystemExit(f"equijax trim-radial: {err}") from None
    table = Table(
        f"{args.model}: radial MLPs fitted as linear maps ({report['pair_distances']} pairs)",
        ["layer", "R²", "RMS error"],
    )
    for row in report["layers"]:
        table.add(row["layer"], f"{row['r2']:.5f}", f"{row['rms_error']:.4f}")
    table.print()
    print(
        f"parameters: {report['params_before']} -> {report['params_after']} "
        f"({100 * report['params_removed_fraction']:.1f}% fewer)"
    )
    info = {"source": args.model, "trim_radial": report}
    save_model(args.out, "nequip", trimmed.config, new_params, info=info)
    Path(args.out, "trim_report.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out} (load it with --model {args.out} or model.pretrained: {args.out})")
    return 0


def cmd_convert_mace(args) -> int:
    from equijax.models.mace.convert import from_torch
    from equijax.models.saved import save_model

    try:
        import torch
    except ImportError:
        raise SystemExit(
            "equijax convert-mace: needs torch and mace-torch (pip install 'equijax[reference]' "
            "then mace-torch --no-deps; see the Makefile)"
        ) from None
    if not Path(args.file).is_file():
        raise SystemExit(f"equijax convert-mace: {args.file}: no such file")
    try:
        torch_model = torch.load(args.file, map_location="cpu", weights_only=False)
        module, params = from_torch(torch_model)
    except (ValueError, OSError, RuntimeError, AttributeError, ModuleNotFoundError) as err:
        raise SystemExit(f"equijax convert-mace: {args.file}: {err}") from None
    info = {"source": str(Path(args.file).resolve()), "converted_from": "mace-torch"}
    save_model(args.out, "mace", module.config, params, info=info)
    print(f"wrote {args.out} (load it with --model {args.out} or model.pretrained: {args.out})")
    return 0


def cmd_bench_tp(args) -> int:
    if args.tune:
        tp_tune.tune(
            lmaxes=args.lmax or range(1, 7),
            channels_list=[args.channels or 16],
            batch=args.batch or 1000,
            repeats=args.repeats or 5,
            path=args.table,
        )
        return 0
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


def cmd_predict(args) -> int:
    try:
        predict_files(
            args.files,
            model=args.model,
            output_format=args.format,
            out=args.out,
            batch_size=args.batch_size,
        )
    except ValueError as err:  # predict's checks: unreadable files, bad structures, names
        raise UserInputError(str(err)) from err
    return 0


def cmd_evaluate(args) -> int:
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


def cmd_train(args) -> int:
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


def cmd_sweep(args) -> int:
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


def cmd_demo(args) -> int:
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


# errors a user's input causes: reported in one line, exit status 2, no traceback
USER_ERRORS = (ConfigError, SweepError, FileNotFoundError, UserInputError)
