"""The PyTorch chgnet side of `equijax bench train-quality`: the same small CHGNet trained by
chgnet's own ``Trainer`` on the structures of equijax's train/val/test split (the optional
``reference`` extra: torch, chgnet, pymatgen; imported only when called).

Data: one ``chgnet.data.dataset.StructureData`` over train + val + test in that order
(``shuffle=False``, so index ``i`` is structure ``i``), and torch ``DataLoader``s over explicit
index lists; chgnet's ``get_train_val_test_loader`` (a random split) is not used. Labels go in
as chgnet's dataset expects them: energy per atom (eV), forces (eV/Å), stress in VASP's
convention (kBar, positive = compressive: ``-10 x`` equijax's GPa, which the dataset's
``* -0.1`` turns back into equijax's value), magmoms (μB; the dataset takes their absolute
value). A missing stress label (EMT slabs without 3D periodicity) is a NaN matrix, which
chgnet's loss masks out (``allow_missing_labels``).

AtomRef: chgnet's own ``AtomRef.fit`` on the training split's energies per atom (pseudo-
inverse least squares on composition fractions, the fit equijax's `fit_atomref` does),
attached as the model's ``composition_model`` and frozen, as equijax freezes its fit.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

# equijax CHGNetConfig fields that chgnet.model.CHGNet takes under the same name
SHARED_FIELDS = (
    "atom_fea_dim",
    "bond_fea_dim",
    "angle_fea_dim",
    "num_radial",
    "num_angular",
    "n_conv",
    "update_bond",
    "update_angle",
    "atom_graph_cutoff",
    "bond_graph_cutoff",
    "cutoff_coeff",
    "learnable_rbf",
    "non_linearity",
    "gMLP_norm",
    "readout_norm",
    "is_intensive",
    "conv_norm",
    "mlp_out_bias",
)


def chgnet_kwargs(config) -> dict:
    """``chgnet.model.CHGNet`` keyword arguments for an equijax `CHGNetConfig` (its
    ``hidden_dim`` shorthand already expanded into the conv hidden dims); the composition model
    is attached separately (`build_model`)."""
    kwargs = {name: getattr(config, name) for name in SHARED_FIELDS}
    kwargs["cutoff_coeff"] = int(kwargs["cutoff_coeff"])
    kwargs.update(
        atom_conv_hidden_dim=list(config.atom_conv_hidden_dim),
        bond_conv_hidden_dim=list(config.bond_conv_hidden_dim),
        angle_layer_hidden_dim=list(config.angle_layer_hidden_dim) or 0,
        mlp_hidden_dims=list(config.mlp_hidden_dims),
        read_out="ave",
        mlp_first=True,
    )
    return kwargs


def to_pymatgen(structures) -> list:
    """pymatgen ``Structure``s of equijax `LabeledStructure`s."""
    from pymatgen.io.ase import AseAtomsAdaptor

    return [AseAtomsAdaptor.get_structure(s.atoms) for s in structures]


def structure_data(structures, graph_converter=None, magmoms: bool = True):
    """A chgnet ``StructureData`` of equijax `LabeledStructure`s, in their order (no shuffle),
    with their ids as ``structure_ids`` and labels in chgnet's input conventions (module doc).
    ``magmoms``: pass the magmom labels (efsm); False for efs."""
    from chgnet.data.dataset import StructureData

    nan_stress = np.full((3, 3), np.nan)
    return StructureData(
        structures=to_pymatgen(structures),
        energies=[s.energy / len(s.atoms) for s in structures],
        forces=[np.asarray(s.forces) for s in structures],
        # VASP's kBar, compressive positive: the dataset multiplies by -0.1 into GPa
        stresses=[
            nan_stress if s.stress is None else -10.0 * np.asarray(s.stress) for s in structures
        ],
        magmoms=[s.magmoms for s in structures] if magmoms else None,
        structure_ids=[s.id for s in structures],
        graph_converter=graph_converter,
        shuffle=False,
    )


def split_indices(train, val, test) -> dict[str, list[int]]:
    """Indices of each split in the concatenation train + val + test (`structure_data`'s
    order)."""
    a, b = len(train), len(train) + len(val)
    return {
        "train": list(range(a)),
        "val": list(range(a, b)),
        "test": list(range(b, b + len(test))),
    }


def loaders(dataset, indices: dict[str, list[int]], batch_size: int, seed: int) -> dict:
    """torch ``DataLoader``s over ``dataset`` for explicit index lists: the train split shuffled
    each epoch (seeded) with its last partial batch dropped, as equijax's loader does; val and
    test in order, complete."""
    import torch
    from chgnet.data.dataset import collate_graphs
    from torch.utils.data import DataLoader, SubsetRandomSampler

    generator = torch.Generator().manual_seed(seed)
    out = {
        "train": DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=SubsetRandomSampler(indices["train"], generator=generator),
            collate_fn=collate_graphs,
            drop_last=True,
        )
    }
    for name in ("val", "test"):
        out[name] = DataLoader(
            dataset, batch_size=batch_size, sampler=indices[name], collate_fn=collate_graphs
        )
    return out


def build_model(config, train, seed: int):
    """A fresh chgnet ``CHGNet`` of equijax's ``config`` (torch init seeded with ``seed``), with
    an ``AtomRef`` fitted by chgnet's ``AtomRef.fit`` on ``train``'s energies per atom."""
    import torch
    from chgnet.model import CHGNet as TorchCHGNet
    from chgnet.model.composition_model import AtomRef

    atomref = AtomRef(is_intensive=True)
    atomref.fit(to_pymatgen(train), [s.energy / len(s.atoms) for s in train])
    torch.manual_seed(seed)
    return TorchCHGNet(composition_model=atomref, **chgnet_kwargs(config))


def param_counts(model) -> dict:
    """All parameters and those the optimizer trains (the AtomRef is frozen)."""
    params = list(model.parameters())
    return {
        "total": int(sum(p.numel() for p in params)),
        "trained": int(sum(p.numel() for p in params if p.requires_grad)),
        "atomref": int(sum(p.numel() for p in model.composition_model.parameters())),
    }


def predict(model, structures, task: str, batch_size: int = 16) -> list[dict]:
    """Per-structure predictions in `equijax.training.evaluate.mean_absolute_errors`' keys."""
    graphs = [model.graph_converter(s) for s in to_pymatgen(structures)]
    out = model.predict_graph(graphs, task=task, batch_size=batch_size)
    out = [out] if isinstance(out, dict) else out
    return [
        {
            "energy_per_atom": float(p["e"]),
            "forces": p["f"],
            "stress": p["s"],
            **({"magmoms": np.ravel(p["m"])} if "m" in p else {}),
        }
        for p in out
    ]


def train_reference(
    config,
    splits: tuple[list, list, list],
    *,
    targets: str,
    seed: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    final_lr_fraction: float,
    loss_kind: str,
    delta: float,
    weights: dict,
    threads: int,
    mae_fn,
    progress: bool = True,
) -> dict:
    """Train a fresh chgnet CHGNet of equijax's ``config`` with chgnet's ``Trainer`` on
    ``splits`` (equijax's train, val, test) and return the final model's val and test MAEs
    (``mae_fn``: equijax's `mean_absolute_errors`, so both sides are scored by one function),
    seconds per training epoch (``Trainer._train`` alone, median), param counts and the AtomRef
    fit. Raises ImportError without the reference extra."""
    import torch
    from chgnet.trainer import Trainer

    torch.set_num_threads(threads)
    train, val, test = splits
    model = build_model(config, train, seed)
    dataset = structure_data(
        train + val + test, graph_converter=model.graph_converter, magmoms="m" in targets
    )
    split_loaders = loaders(dataset, split_indices(train, val, test), batch_size, seed)

    epoch_seconds: list[float] = []

    class TimedTrainer(Trainer):
        """chgnet's Trainer with each training epoch timed."""

        def _train(self, *args, **kwargs):
            t0 = time.perf_counter()
            out = super()._train(*args, **kwargs)
            epoch_seconds.append(time.perf_counter() - t0)
            if progress:
                print(
                    f"    chgnet epoch {len(epoch_seconds)}/{epochs}: "
                    f"{epoch_seconds[-1]:.1f} s, train MAE {out}",
                    flush=True,
                )
            return out

    trainer = TimedTrainer(
        model=model,
        targets=targets,
        energy_loss_ratio=weights["energy"],
        force_loss_ratio=weights["forces"],
        stress_loss_ratio=weights["stress"],
        mag_loss_ratio=weights["magmoms"],
        optimizer="Adam",
        scheduler="CosLR",
        scheduler_params={"decay_fraction": final_lr_fraction},
        criterion={"huber": "Huber", "mse": "MSE"}[loss_kind],
        delta=delta,
        epochs=epochs,
        learning_rate=learning_rate,
        print_freq=10**9,
        torch_seed=seed,
        use_device="cpu",
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chgnet_trainer_") as save_dir:
        trainer.train(split_loaders["train"], split_loaders["val"], None, save_dir=save_dir)
    wall = time.perf_counter() - t0
    model = trainer.model
    errors = {
        name: mae_fn(predict(model, structures, targets), structures)
        for name, structures in (("val", val), ("test", test))
    }
    return {
        **errors,
        "seconds_per_epoch": float(np.median(epoch_seconds)),
        "epoch_seconds": epoch_seconds,
        "train_wall_s": wall,
        "steps": epochs * len(split_loaders["train"]),
        "params": param_counts(model),
        "atomref": model.composition_model.fc.weight.detach().numpy().ravel().astype(float),
        "torch_threads": torch.get_num_threads(),
        # the Trainer's own last validation MAEs (its mean of batch means; key e, f, s, m)
        "trainer_val_mae": {k: v["val"][-1] for k, v in trainer.training_history.items()},
    }
