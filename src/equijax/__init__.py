"""equijax: E(3)-equivariant interatomic potentials in JAX.

The names a user imports most: the graphs (`atoms_to_graph`, `pad_batch`), the model registry
and models, `Potential` and its ASE calculator, and training (`load_config`, `train`,
`load_trained`). Every subpackage (`equijax.graphs`, `equijax.nn`, `equijax.models`,
`equijax.training`, `equijax.data`) exports its own public names too.
"""

from equijax import data, graphs, models, nn, training
from equijax.calculators import EquijaxCalculator
from equijax.graphs import BucketPolicy, CrystalGraph, atoms_to_graph, pad_batch, padding_masks
from equijax.models import CHGNet, CHGNetConfig, EquivariantConfig, EquivariantPotential, registry
from equijax.potential import Potential, predict_padded
from equijax.training import load_config, load_trained, train

__version__ = "0.1.0"

__all__ = [
    "BucketPolicy",
    "CHGNet",
    "CHGNetConfig",
    "CrystalGraph",
    "EquijaxCalculator",
    "EquivariantConfig",
    "EquivariantPotential",
    "Potential",
    "__version__",
    "atoms_to_graph",
    "data",
    "graphs",
    "load_config",
    "load_trained",
    "models",
    "nn",
    "pad_batch",
    "padding_masks",
    "predict_padded",
    "registry",
    "train",
    "training",
]
