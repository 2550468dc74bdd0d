"""Facet's trim of a NequIP / SevenNet model: each layer's radial MLP (enveloped Bessel basis ->
hidden layers -> path weights) replaced by one linear map of the same basis, fitted by least
squares over the pair distances of real structures; optionally the two linear readout maps
collapsed into one (exact: there is no activation between them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import ase
import jax
import jax.numpy as jnp
import numpy as np

from equijax.graphs import atoms_to_graph
from equijax.graphs.crystal_graph import edge_vectors
from equijax.models.nequip.config import NequIPConfig
from equijax.models.nequip.model import NequIP, envelope, sevenn_bessel
from equijax.nn.fully_connected import fully_connected
from equijax.nn.normalized_activation import normalized_activation


def pair_distances(structures: Sequence[ase.Atoms], cutoff: float) -> np.ndarray:
    """Every neighbour distance (Å, each pair once) of the structures within ``cutoff``."""
    lengths = []
    for atoms in structures:
        graph = atoms_to_graph(atoms, cutoff, min(3.0, cutoff))
        vectors = edge_vectors(graph.atoms)
        r = np.linalg.norm(vectors, axis=-1)
        lengths.append(r[graph.atoms.senders < graph.atoms.receivers])
    return np.concatenate(lengths)


def radial_basis(config: NequIPConfig, params: dict, r: np.ndarray) -> np.ndarray:
    """(S, num_radial) enveloped Bessel basis of the distances ``r`` with the model's
    frequencies, float64."""
    r = jnp.asarray(r, jnp.float64) if jax.config.jax_enable_x64 else jnp.asarray(r)
    frequencies = jnp.asarray(params["params"]["bessel_frequencies"], r.dtype)
    basis = sevenn_bessel(r, frequencies, config.cutoff) * envelope(config, r)[:, None]
    return np.asarray(basis, np.float64)


def trim_radial(
    module: NequIP,
    params: dict,
    structures: Sequence[ase.Atoms],
    collapse_readout: bool = False,
) -> tuple[NequIP, dict, dict]:
    """The trimmed model ``(module, params, report)``.

    Each layer's radial weights W(r) = MLP(B(r)) are fitted as B(r) A over the pair distances of
    ``structures`` (least squares, float64). ``report``: per layer the R² of the fit (over all
    outputs, against their means), and the parameter counts before and after.
    """
    config = module.config
    if config.radial != "mlp":
        raise ValueError(f"trim_radial needs model.radial=mlp, got {config.radial!r}")
    r = pair_distances(structures, config.cutoff)
    if r.size < 10 * config.num_radial:
        raise ValueError(f"only {r.size} pair distances: give more structures to fit on")
    basis = radial_basis(config, params, r)
    act = normalized_activation(config.act_radial, config.activation_scales)
    new = jax.tree_util.tree_map(np.asarray, params)
    layers = []
    for t in range(config.num_layers):
        weight_nn = params["params"][f"interaction_{t}"]["radial"]["weight_nn"]
        weights = [np.asarray(weight_nn[f"layer{k}"], np.float64) for k in range(len(weight_nn))]
        target = np.asarray(fully_connected(jnp.asarray(basis), weights, act), np.float64)
        fit, *_ = np.linalg.lstsq(basis, target, rcond=None)
        residual = target - basis @ fit
        total = target - target.mean(axis=0)
        r2 = 1.0 - float((residual**2).sum() / (total**2).sum())
        dtype = np.asarray(weight_nn["layer0"]).dtype
        # `FullyConnectedNet` divides by sqrt(fan_in): store A * sqrt(num_radial)
        layer0 = (fit * np.sqrt(config.num_radial)).astype(dtype)
        new["params"][f"interaction_{t}"]["radial"]["weight_nn"] = {"layer0": layer0}
        layers.append({"layer": t, "r2": r2, "rms_error": float(np.sqrt((residual**2).mean()))})
    trimmed = dataclasses.replace(config, radial="linear")
    if collapse_readout:
        hidden = new["params"].pop("readout_hidden")
        energy = new["params"].pop("readout_energy")
        (w1,), (w2,) = hidden.values(), energy.values()
        n_in, n_hidden = w1.shape
        # (x W1 / sqrt(n_in)) W2 / sqrt(n_hidden) = x (W1 W2 / sqrt(n_hidden)) / sqrt(n_in)
        combined = (np.asarray(w1, np.float64) @ np.asarray(w2, np.float64)) / np.sqrt(n_hidden)
        new["params"]["readout"] = {f"w[0,0] {n_in}x0e,1x0e": combined.astype(w1.dtype)}
        trimmed = dataclasses.replace(trimmed, readout="collapsed")
    report = {
        "pair_distances": int(r.size),
        "layers": layers,
        "params_before": count(params),
        "params_after": count(new),
    }
    report["params_removed_fraction"] = 1 - report["params_after"] / report["params_before"]
    return NequIP(trimmed), new, report


def count(params) -> int:
    """Number of parameters (array elements) in a param tree."""
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))
