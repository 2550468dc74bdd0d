"""What a MACE config computes: per layer, the symmetric contraction's couplings and the
convolution's paths that its kinds realize (`paths`), and its trainable weights (`num_weights`).
The numbers of the Price-of-Freedom table come from here."""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import numpy as np

from equijax.models.mace.config import MACEConfig
from equijax.nn.symmetric_contraction import contraction_num_weights, contraction_paths
from equijax.nn.uvu import uvu_paths


def paths(config: MACEConfig) -> list[dict]:
    """Per layer: ``{"layer", "contraction": rows of `contraction_paths` for
    ``config.contraction``, "couplings" (CG's count), "realized" (this kind's), "conv_paths":
    (realized, CG's count), "contraction_weights"}``."""
    report = []
    for layer in range(config.num_interactions):
        target = config.interaction_irreps(layer)
        one_channel = e3nn.Irreps([ir for _, ir in target])
        irreps_out = config.layer_irreps_out(layer)
        correlation = config.layer_correlation(layer)
        rows = contraction_paths(config.contraction, one_channel, irreps_out, correlation)
        keep = [ir for _, ir in target]
        h_in = config.layer_irreps_in(layer)
        cg_conv = uvu_paths(h_in, config.sh_irreps(), keep, "cg")
        own_conv = uvu_paths(h_in, config.sh_irreps(), keep, config.tp)
        report.append(
            {
                "layer": layer,
                "contraction": rows,
                "couplings": sum(r["couplings"] for r in rows),
                "realized": sum(r["realized"] for r in rows),
                "conv_paths": (len(own_conv), len(cg_conv)),
                "contraction_weights": contraction_num_weights(
                    config.contraction,
                    one_channel,
                    irreps_out,
                    correlation,
                    len(config.atomic_numbers),
                ),
            }
        )
    return report


def num_weights(config: MACEConfig) -> int:
    """Trainable parameters of the model (the E0s, ``atomref``, excluded), by shape inference
    on a one-atom graph (no compute)."""
    import ase

    from equijax.graphs import atoms_to_graph
    from equijax.models.mace.model import MACE

    z = config.atomic_numbers[0]
    graph = atoms_to_graph(ase.Atoms(numbers=[z, z], positions=[[0, 0, 0], [1.5, 0, 0]]), 5, 3)
    shapes = jax.eval_shape(MACE(config).init, jax.random.key(0), graph)["params"]
    shapes = {k: v for k, v in shapes.items() if k != "atomref"}
    return int(sum(np.prod(s.shape) for s in jax.tree_util.tree_leaves(shapes)))
