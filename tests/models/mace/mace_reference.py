"""The reference: mace-torch models with random weights, run on ase.Atoms in float32 or float64,
giving energy (eV), forces (eV/Å) and stress as a (3, 3) tensor in GPa (equijax's convention)."""

from __future__ import annotations

import numpy as np

EV_PER_A3_TO_GPA = 160.21766208
BLOCKS = {
    "plain": "RealAgnosticInteractionBlock",
    "residual": "RealAgnosticResidualInteractionBlock",
}


def mace_model(
    *,
    atomic_numbers=(1, 8, 29),
    max_ell=2,
    correlation=3,
    num_interactions=2,
    hidden_irreps="8x0e+8x1o",
    first="residual",
    scale_shift=True,
    r_max=4.0,
    seed=0,
    dtype="float32",
):
    """A mace-torch model whose every weight is drawn N(0, 1) (E0s, scale and shift too)."""
    import torch
    from e3nn import o3
    from mace import modules

    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        kwargs = dict(
            r_max=r_max,
            num_bessel=6,
            num_polynomial_cutoff=5,
            max_ell=max_ell,
            interaction_cls=modules.interaction_classes[BLOCKS["residual"]],
            interaction_cls_first=modules.interaction_classes[BLOCKS[first]],
            num_interactions=num_interactions,
            num_elements=len(atomic_numbers),
            hidden_irreps=o3.Irreps(hidden_irreps),
            MLP_irreps=o3.Irreps("6x0e"),
            atomic_energies=rng.normal(size=len(atomic_numbers)),
            avg_num_neighbors=7.5,
            atomic_numbers=list(atomic_numbers),
            correlation=correlation,
            gate=torch.nn.functional.silu,
            radial_MLP=[16, 16],
        )
        if scale_shift:
            model = modules.ScaleShiftMACE(
                atomic_inter_scale=1.3, atomic_inter_shift=-0.4, **kwargs
            )
        else:
            model = modules.MACE(**kwargs)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.normal_()
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def mace_predict(model, structures, dtype="float32") -> list[dict]:
    """Energy, forces and stress (GPa, (3, 3); zeros without a periodic cell) of each
    structure, through mace's own graph building (matscipy neighbour list)."""
    import torch
    from mace import data as mace_data
    from mace.tools import torch_geometric, utils

    z_table = utils.AtomicNumberTable([int(z) for z in model.atomic_numbers])
    r_max = float(model.r_max)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    results = []
    try:
        for atoms in structures:
            config = mace_data.config_from_atoms(atoms)
            data = mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=r_max)
            batch = next(iter(torch_geometric.dataloader.DataLoader([data], batch_size=1)))
            batch = batch.to_dict()
            periodic = bool(atoms.pbc.all())
            out = model(batch, compute_force=True, compute_stress=periodic, training=False)
            stress = np.zeros((3, 3))
            if periodic:
                # mace's stress is ASE's sign convention, eV/Å^3
                stress = out["stress"].detach().numpy().reshape(3, 3) * EV_PER_A3_TO_GPA
            results.append(
                {
                    "energy": float(out["energy"].detach()),
                    "forces": out["forces"].detach().numpy(),
                    "stress": stress,
                }
            )
    finally:
        torch.set_default_dtype(previous)
    return results
