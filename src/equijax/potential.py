"""Model -> energy, forces, stress and magnetic moments.

Forces and stress come from one `jax.grad` of the total energy with respect to the positions and a
strain applied to each cell (``cell @ (1 + ε)``, positions likewise), as CHGNet does:
``F = -dE/dr`` (eV/Å) and ``σ = (1/V) dE/dε`` converted to GPa (CHGNet's sign and unit; ASE's
sign, in eV/Å³ after dividing by 160.2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import ase
import jax
import jax.numpy as jnp
import numpy as np

from equijax.graphs import (
    BucketPolicy,
    CrystalGraph,
    atoms_to_graph,
    pad_batch,
    padding_masks,
)
from equijax.graphs.crystal_graph import graph_index
from equijax.graphs.validation import StructureLabel
from equijax.models import registry
from equijax.models.protocol import Model, check_model
from equijax.units import EV_PER_A3_TO_GPA


def is_direct(module: Model) -> bool:
    """True if ``module`` reads out forces and stress directly (``config.forces == "direct"``)."""
    return check_model(module).config.is_direct


def predict_padded(
    module: Model,
    params,
    graph: CrystalGraph,
    compute_stress: bool = True,
    gradient_forces: bool = False,
) -> dict:
    """Predictions for every graph of a padded batch (pure; jit it, see `make_predictor`).

    Returns a dict of arrays (padding entries included, mask them with `padding_masks`):
        ``energy`` (G,) eV, ``energy_per_atom`` (G,) eV/atom, ``forces`` (N, 3) eV/Å,
        ``stress`` (G, 3, 3) GPa (zero for graphs without a 3D cell), ``magmoms`` (N,) μB.

    A module whose ``config.forces`` is ``"direct"`` returns forces and stress itself: then the
    model runs once, without any derivative. With ``gradient_forces`` its forces and stress are
    the energy's gradients instead, as for a conservative model, and its heads' outputs come as
    ``direct_forces`` (N, 3) and ``direct_stress`` (G, 3, 3) too (``train.conservative_every``,
    ``loss.stage_two.conservative_every``).
    """
    if gradient_forces and not is_direct(module):
        raise ValueError(
            "gradient_forces is for a model with direct heads (config.forces='direct')"
        )
    atoms = graph.atoms
    n_graphs, n_atoms = atoms.n_node.shape[0], atoms.nodes["positions"].shape[0]
    graph_of_atom = graph_index(atoms.n_node, n_atoms)
    masks = padding_masks(graph)
    positions = jnp.asarray(atoms.nodes["positions"])
    cell = jnp.asarray(atoms.globals["cell"], positions.dtype)

    if is_direct(module) and not gradient_forces:
        out = module.apply(params, graph)
        forces, stress = out["forces"], out["stress"]
    else:

        def total_energy(positions, strain):
            deform = jnp.eye(3, dtype=positions.dtype) + strain
            # geometry at full float32 whatever the matmul precision (equijax.nn.precision)
            strained_positions = jnp.einsum(
                "ni,nij->nj", positions, deform[graph_of_atom], precision="highest"
            )
            strained_cell = jnp.einsum("gij,gjk->gik", cell, deform, precision="highest")
            out = module.apply(params, graph, strained_positions, strained_cell)
            return jnp.sum(jnp.where(masks["graph"], out["energy"], 0.0)), out

        # zeros shaped like the (per-device) cells: under shard_map the strain must be
        # device-varying, or its gradient (the stress) would be summed over devices
        strain = jnp.zeros_like(cell)
        argnums = (0, 1) if compute_stress else (0,)
        grads, out = jax.grad(total_energy, argnums=argnums, has_aux=True)(positions, strain)
        forces, stress = -grads[0], None
        if compute_stress:
            volume = jnp.asarray(atoms.globals["volume"], positions.dtype)
            has_cell = volume > 0
            scale = jnp.where(has_cell, EV_PER_A3_TO_GPA / jnp.where(has_cell, volume, 1.0), 0.0)
            stress = grads[1] * scale[:, None, None]
    n_node = jnp.maximum(atoms.n_node, 1).astype(positions.dtype)
    atomref = jax.ops.segment_sum(out["atomref"], graph_of_atom, n_graphs, indices_are_sorted=True)
    energy = out["energy"] + atomref
    result = {
        "energy": energy,
        "energy_per_atom": energy / n_node,
        "forces": forces,
        "magmoms": out["magmoms"],
    }
    if compute_stress:
        result["stress"] = stress
    if gradient_forces:
        result["direct_forces"] = out["forces"]
        if compute_stress:
            result["direct_stress"] = out["stress"]
    return result


class Potential:
    """A model with its params, ready to predict on `ase.Atoms`.

    Structures are batched and padded to `BucketPolicy` buckets, so a stream of structures of
    different sizes compiles only once per bucket. ``module`` is any `equijax.models.Model`
    (a registered model); its config gives the graph cutoffs unless ``cutoff`` (atom graph) and
    ``bond_cutoff`` (bond graph), in Å, override them.

    Memory-lean mode (models whose config has ``lean_inference``, e.g. CHGNet): messages run in
    pieces that the force/stress backward pass recomputes, instead of keeping their edge- and
    angle-level activations (`equijax.models.chgnet.lean`). It is the same function with several
    times less memory. ``lean=None`` (default) uses it at every size on the CPU when the config's
    lean mode is also faster there (``config.pair_free_lean``, true for the pretrained CHGNets),
    else (and on accelerators) for padded batches of at least ``lean_atoms`` atoms;
    ``True``/``False`` force it on or off.
    """

    def __init__(
        self,
        module: Model,
        params,
        *,
        cutoff: float | None = None,
        bond_cutoff: float | None = None,
        policy: BucketPolicy | None = None,
        lean: bool | None = None,
        lean_atoms: int = 256,
    ):
        config = check_model(module).config
        self.module, self.params = module, params
        self.cutoff = cutoff or config.atom_graph_cutoff
        self.bond_cutoff = bond_cutoff or min(config.bond_graph_cutoff, self.cutoff)
        self.policy = policy or BucketPolicy()
        self._predict = jax.jit(lambda p, g, s: predict_padded(module, p, g, s), static_argnums=2)
        self._lean_predict = None
        if hasattr(config, "lean_inference"):
            lean_module = module.clone(config=dataclasses.replace(config, lean_inference=True))
            self._lean_predict = jax.jit(
                lambda p, g, s: predict_padded(lean_module, p, g, s), static_argnums=2
            )
        elif lean:
            raise ValueError(
                f"lean=True: {type(module).__name__} has no memory-lean mode "
                "(its config has no lean_inference)"
            )
        if lean_atoms < 1:
            raise ValueError(f"lean_atoms must be >= 1, got {lean_atoms}")
        self.lean, self.lean_atoms = lean, lean_atoms
        # measured faster only on the CPU, where its pieces fit the caches; a GPU's scan over
        # small pieces would run them one by one, so there it stays the mode of large batches
        self._lean_faster = (
            bool(getattr(config, "pair_free_lean", False)) and jax.default_backend() == "cpu"
        )
        self.compiled_shapes: set = set()

    def uses_lean(self, padded_atoms: int) -> bool:
        """Whether a padded batch of ``padded_atoms`` atoms runs in the memory-lean mode."""
        if self._lean_predict is None:
            return False
        if self.lean is not None:
            return self.lean
        return self._lean_faster or padded_atoms >= self.lean_atoms

    @classmethod
    def from_pretrained(cls, name: str = "chgnet-0.3.0", **kwargs) -> Potential:
        """The pretrained model ``name`` (`equijax.models.registry.available_pretrained`; the
        CHGNet versions ``"0.3.0"``/``"0.2.0"`` alone work too) as a `Potential`."""
        module, params = registry.load_pretrained(name)
        return cls(module, params, **kwargs)

    def graphs(self, structures: Sequence[ase.Atoms]) -> list[CrystalGraph]:
        """Graphs of the structures at the model's cutoffs (bad input, or an element the model
        lacks, raises `ValueError`)."""
        graphs = []
        for i, a in enumerate(structures):
            label = StructureLabel(a, i)
            try:
                self.module.config.check_numbers(a.numbers)
            except ValueError as err:
                raise ValueError(f"{label}: {err}") from None
            graphs.append(atoms_to_graph(a, self.cutoff, self.bond_cutoff, label=label))
        return graphs

    def predict_padded(self, padded: CrystalGraph, compute_stress: bool = True) -> dict:
        """`predict_padded`'s arrays for one padded batch (padding entries included), in the
        lean or plain mode that `uses_lean` picks for its size; compiled once per shape."""
        lean = self.uses_lean(int(padded.atoms.n_node.sum()))
        self.compiled_shapes.add((padded.sizes, compute_stress, lean))
        predict = self._lean_predict if lean else self._predict
        return predict(self.params, padded, compute_stress)

    def predict_graphs(
        self, graphs: Sequence[CrystalGraph], batch_size: int = 40, compute_stress: bool = True
    ) -> list[dict[str, Any]]:
        """Per-structure numpy predictions (see `predict_padded` for keys and units)."""
        results = []
        for start in range(0, len(graphs), batch_size):
            chunk = list(graphs[start : start + batch_size])
            padded, real = pad_batch(chunk, self.policy)
            out = jax.device_get(self.predict_padded(jax.device_put(padded), compute_stress))
            atom_start = np.concatenate([[0], np.cumsum(padded.atoms.n_node[: len(chunk)])])
            for k in range(len(chunk)):
                atoms = slice(atom_start[k], atom_start[k + 1])
                item = {
                    "energy": float(out["energy"][k]),
                    "energy_per_atom": float(out["energy_per_atom"][k]),
                    "forces": np.asarray(out["forces"][atoms]),
                    "magmoms": np.asarray(out["magmoms"][atoms]),
                }
                if compute_stress:
                    item["stress"] = np.asarray(out["stress"][k])
                results.append(item)
        return results

    def predict(
        self,
        structures: ase.Atoms | Sequence[ase.Atoms],
        batch_size: int = 40,
        compute_stress: bool = True,
    ):
        """Predict one structure (returns a dict) or a list of them (returns a list of dicts)."""
        single = isinstance(structures, ase.Atoms)
        out = self.predict_graphs(
            self.graphs([structures] if single else structures), batch_size, compute_stress
        )
        return out[0] if single else out
