"""The argument parser of the `equijax` command: its subcommands and their options."""

from __future__ import annotations

import argparse

from equijax.cli.data import add_data_parser

DESCRIPTION = (
    "equijax: E(3)-equivariant interatomic potentials in JAX. Subcommands: demo, bench "
    "graphs|chgnet-infer|chgnet-train|tp|model|md|sevennet|mace|train-quality|report, data build|check, train, "
    "sweep, evaluate, predict."
)


def int_list(text: str) -> list[int]:
    """ "1,2,3" or "1-6" -> list of ints (argparse type)."""
    try:
        if "-" in text:
            lo, hi = text.split("-")
            return list(range(int(lo), int(hi) + 1))
        return [int(v) for v in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected '1,2,3' or '1-6', got {text!r}") from err


def _handler(name: str):
    """The subcommand handler ``equijax.cli.commands.<name>``, imported when it runs."""

    def run(args) -> int:
        # the handlers load jax, the models and training (seconds): imported only when a
        # command runs, so `equijax --help` and usage errors answer at once
        from equijax.cli import commands

        return getattr(commands, name)(args)

    return run


def _bench_report(args) -> int:
    # light: reads JSON and writes Markdown and a PNG, none of the model code
    from equijax.cli.report import cmd_bench_report

    return cmd_bench_report(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equijax", description=DESCRIPTION)
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of a user error (bad file, structure, key) instead of one line",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="the main job on embedded defaults")
    demo.add_argument("--out", default="results/demo", help="folder for the JSON results")
    demo.set_defaults(func=_handler("cmd_demo"))

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
    g.set_defaults(func=_handler("cmd_bench_graphs"))

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
    c.set_defaults(func=_handler("cmd_bench_chgnet_infer"))

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
    ct.set_defaults(func=_handler("cmd_bench_chgnet_train"))

    tpb = bench_sub.add_parser(
        "tp", help="tensor products: equijax kinds vs e3nn-jax and cuequivariance"
    )
    tpb.add_argument(
        "--lmax",
        type=int_list,
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
    tpb.add_argument(
        "--tune",
        action="store_true",
        help="time every gaunt_grid method instead and write the table method='auto' reads "
        "(to --table, default ~/.cache/equijax/tp_tuning_<backend>.json)",
    )
    tpb.add_argument("--table", default=None, help="where --tune writes its table")
    tpb.set_defaults(func=_handler("cmd_bench_tp"))

    bm = bench_sub.add_parser(
        "model",
        help="an equivariant model from a training config vs the "
        "same model on e3nn-jax's tensor_product",
    )
    bm.add_argument(
        "--config",
        default="equivariant_emt_small",
        help="experiment YAML or packaged name (model.name equivariant, nequip or mace)",
    )
    bm.add_argument(
        "--tps",
        default=None,
        help="comma list of tensor-product kinds to time (cg,gaunt_grid,gaunt_fourier,"
        "vector_gaunt); default the config's model.config.tp",
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
    bm.set_defaults(func=_handler("cmd_bench_model"))

    sn = bench_sub.add_parser(
        "sevennet", help="pretrained SevenNet: MD calls, batched inference, train step vs sevenn"
    )
    sn.add_argument("--model", default="sevennet-0", help="sevennet-0 or sevennet-l3i5")
    sn.add_argument("--batch-size", type=int, default=8, help="structures per batch")
    sn.add_argument(
        "--md-atoms", type=int_list, default=[32, 108], help="MD cell sizes (comma-separated)"
    )
    sn.add_argument("--steps", type=int, default=3, help="timed calls per row (median)")
    sn.add_argument("--modes", default="md,infer,train", help="subset of md,infer,train")
    sn.add_argument("--no-reference", action="store_true", help="skip sevenn")
    sn.add_argument("--out", default="results/bench_sevennet.json", help="JSON output path")
    sn.set_defaults(func=_handler("cmd_bench_sevennet"))

    mc = bench_sub.add_parser(
        "mace", help="MACE (random weights): MD calls, batched inference, train step vs mace-torch"
    )
    mc.add_argument("--size", default="medium", choices=["medium", "small"], help="model size")
    mc.add_argument("--batch-size", type=int, default=8, help="structures per batch")
    mc.add_argument(
        "--md-atoms", type=int_list, default=[32, 108], help="MD cell sizes (comma-separated)"
    )
    mc.add_argument("--steps", type=int, default=3, help="timed calls per row (median)")
    mc.add_argument("--only", "--modes", default="md,infer,train", help="subset of md,infer,train")
    mc.add_argument("--no-reference", action="store_true", help="skip mace-torch")
    mc.add_argument("--out", default="results/bench_mace.json", help="JSON output path")
    mc.set_defaults(func=_handler("cmd_bench_mace"))

    md = bench_sub.add_parser(
        "md", help="ASE MD steps/s with the pretrained CHGNet: EquijaxCalculator vs chgnet's"
    )
    md.add_argument(
        "--atoms", type=int_list, default=[64, 512, 4000], help="Cu cell sizes (comma-separated)"
    )
    md.add_argument("--dynamics", default="nve,nvt", help="subset of nve,nvt")
    md.add_argument("--steps", type=int, default=20, help="timed MD steps per row")
    md.add_argument("--warmup", type=int, default=2, help="untimed steps first (compiles)")
    md.add_argument("--no-reference", action="store_true", help="skip chgnet")
    md.add_argument(
        "--reference-max-atoms",
        type=int,
        default=2048,
        help="skip chgnet above this size (it needs 16 GB at 864 atoms)",
    )
    md.add_argument(
        "--limit-gb", type=float, default=0.0, help="address-space limit per run (0: none)"
    )
    md.add_argument("--out", default="results/bench_md.json", help="JSON output path")
    md.set_defaults(func=_handler("cmd_bench_md"))

    tq = bench_sub.add_parser(
        "train-quality", help="equijax's training recipe vs chgnet's Trainer (val/test MAEs)"
    )
    tq.add_argument("--data", default="emt_small,teacher_2000", help="data groups, comma-separated")
    tq.add_argument("--seeds", type=int_list, default=[0, 1, 2], help="train seeds ('0,1,2')")
    tq.add_argument("--epochs", type=int, default=None, help="epochs (default: the config's 8)")
    tq.add_argument(
        "--n-structures",
        default=None,
        help="structures per data set, e.g. 'teacher_2000=800' (a teacher subset is the first N "
        "of the cached 2000); a bare number applies to every data set",
    )
    tq.add_argument("--sides", default="equijax,chgnet", help="subset of equijax,chgnet")
    tq.add_argument("--run-root", default="runs/train_quality", help="equijax run directories")
    tq.add_argument("--out", default="results/bench_train_quality.json", help="JSON output path")
    tq.add_argument("overrides", nargs="*", help="equijax config overrides (its side only)")
    tq.set_defaults(func=_handler("cmd_bench_train_quality"))

    rp = bench_sub.add_parser(
        "report",
        help="docs/benchmarks.md's tables and chart from the committed bench JSONs",
    )
    rp.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 2 with one line if the page differs from what the JSONs give",
    )
    rp.add_argument("--root", default=".", help="repository root (the JSON paths start there)")
    rp.add_argument("--page", default="docs/benchmarks.md", help="page, relative to --root")
    rp.add_argument(
        "--chart", default="docs/img/benchmark_ratios.png", help="chart PNG, relative to --root"
    )
    rp.set_defaults(func=_bench_report)

    tr = sub.add_parser(
        "trim-radial",
        help="Facet's trim: a NequIP/SevenNet model's radial MLPs as least-squares linear maps",
    )
    tr.add_argument("--model", default="sevennet-0", help="pretrained name or saved model folder")
    tr.add_argument("--out", required=True, help="folder to write the trimmed model to")
    tr.add_argument(
        "--structures",
        default=None,
        help="structure file whose pair distances the fit uses (default: the packaged "
        "benchmark structures)",
    )
    tr.add_argument("--limit", type=int, default=128, help="use the first N structures")
    tr.add_argument(
        "--collapse-readout", action="store_true", help="also merge the two readout maps into one"
    )
    tr.set_defaults(func=_handler("cmd_trim_radial"))

    cm = sub.add_parser(
        "convert-mace",
        help="a mace-torch model file -> an equijax model folder (usable as --model DIR)",
    )
    cm.add_argument("file", help="a mace-torch model saved with torch.save (MACE/ScaleShiftMACE)")
    cm.add_argument("--out", required=True, help="folder to write the equijax model to")
    cm.set_defaults(func=_handler("cmd_convert_mace"))

    add_data_parser(sub, _handler)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("--config", default=None, help="YAML experiment config (configs/experiment/...)")
    t.add_argument(
        "--resume", action="store_true", help="continue from the run's latest checkpoint"
    )
    t.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=3")
    t.set_defaults(func=_handler("cmd_train"))

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
    sw.set_defaults(func=_handler("cmd_sweep"))

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
    ev.set_defaults(func=_handler("cmd_evaluate"))

    p = sub.add_parser("predict", help="energy, forces, stress, magmoms for structure files")
    p.add_argument("files", nargs="+", help="structure files in any ase.io format (all frames)")
    p.add_argument(
        "--model",
        default="chgnet-0.3.0",
        help="pretrained model: a name of equijax.models.registry.available_pretrained() "
        "(chgnet-0.3.0, chgnet-0.2.0, ...; the CHGNet versions 0.3.0 and 0.2.0 alone work too)",
    )
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format")
    p.add_argument("--out", default=None, help="write to this file instead of stdout")
    p.add_argument("--batch-size", type=int, default=40, help="structures per batch")
    p.set_defaults(func=_handler("cmd_predict"))
    return parser
