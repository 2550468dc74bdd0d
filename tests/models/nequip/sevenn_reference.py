"""The reference: sevenn (torch) models run on ase.Atoms in float32 or float64, giving energy (eV),
forces (eV/Å) and stress as a (3, 3) tensor in GPa, equijax's convention."""

from __future__ import annotations

import numpy as np

EV_PER_A3_TO_GPA = 160.21766208


def _voigt_to_tensor(v) -> np.ndarray:
    xx, yy, zz, xy, yz, zx = v  # sevenn's PRED_STRESS order
    return np.array([[xx, xy, zx], [xy, yy, yz], [zx, yz, zz]])


def float64_model(model, config):
    """A float64 copy of the sevenn ``model``, built afresh in float64 so that its
    Clebsch-Gordan buffers are float64 too (a cast would keep float32-rounded ones)."""
    import torch
    from sevenn.model_build import build_E3_equivariant_model

    state = {k: v for k, v in model.state_dict().items() if "_w3j_" not in k}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        fresh = build_E3_equivariant_model(dict(config))
        missing, unexpected = fresh.load_state_dict(state, strict=False)
    finally:
        torch.set_default_dtype(previous)
    assert not unexpected and all("_w3j_" in k for k in missing), (missing, unexpected)
    return fresh.double().eval()


def sevenn_predict(model, structures, cutoff: float, dtype=None) -> list[dict]:
    """Energy, forces and stress (GPa, (3, 3); zeros without a cell) of each structure."""
    import sevenn._keys as KEY
    import torch
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from sevenn.util import dtype_correct

    dtype = dtype or torch.float32
    model.eval()
    model.set_is_batch_data(False)
    embed = model._modules["onehot_idx_to_onehot"]

    def cast(_module, _inputs, out):  # sevenn's one-hot is always float32
        for key in (KEY.NODE_FEATURE, KEY.NODE_ATTR):
            out[key] = out[key].to(dtype)
        return out

    handle = embed.register_forward_hook(cast)
    results = []
    try:
        for atoms in structures:
            graph = unlabeled_atoms_to_graph(atoms, cutoff, with_shift=False)
            # sevenn's from_numpy_dict rounds every float array to float32: convert here
            data = AtomGraphData(
                **{k: dtype_correct(v, float_dtype=dtype) for k, v in graph.items()}
            )
            out = model(data)
            ase_stress = -out[KEY.PRED_STRESS].detach().numpy().reshape(-1)  # eV/Å^3
            results.append(
                {
                    "energy": float(out[KEY.PRED_TOTAL_ENERGY].detach()),
                    "forces": out[KEY.PRED_FORCE].detach().numpy()[: len(atoms)],
                    # equijax's stress is ASE's, in GPa
                    "stress": _voigt_to_tensor(ase_stress) * EV_PER_A3_TO_GPA
                    if atoms.pbc.all()
                    else np.zeros((3, 3)),
                }
            )
    finally:
        handle.remove()
    return results
