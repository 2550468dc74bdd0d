"""equijax: E(3)-equivariant interatomic potentials in JAX.

The names a user imports most: the graphs (`atoms_to_graph`, `pad_batch`), the model registry
and models, `Potential` and its ASE calculator, and training (`load_config`, `train`,
`load_trained`). Every subpackage (`equijax.graphs`, `equijax.nn`, `equijax.models`,
`equijax.training`, `equijax.data`) exports its own public names too.

The names load on first use (PEP 562), as in jax and scipy: ``import equijax`` itself imports
no numerical library, so the command line can pin the BLAS/OpenMP thread counts before any
library that reads them loads (`equijax.cli`).
"""

import importlib

__version__ = "0.1.0"

# public name -> the module it comes from
_EXPORTS = {
    "BucketPolicy": "equijax.graphs",
    "CrystalGraph": "equijax.graphs",
    "atoms_to_graph": "equijax.graphs",
    "pad_batch": "equijax.graphs",
    "padding_masks": "equijax.graphs",
    "CHGNet": "equijax.models",
    "CHGNetConfig": "equijax.models",
    "EquivariantConfig": "equijax.models",
    "EquivariantPotential": "equijax.models",
    "registry": "equijax.models",
    "Potential": "equijax.potential",
    "predict_padded": "equijax.potential",
    "EquijaxCalculator": "equijax.calculators",
    "load_config": "equijax.training",
    "load_trained": "equijax.training",
    "train": "equijax.training",
}
_SUBPACKAGES = ("data", "graphs", "models", "nn", "training")

__all__ = ["__version__", *_SUBPACKAGES, *_EXPORTS]


def __getattr__(name: str):
    """Load a public name (or subpackage) of equijax on first use."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"equijax.{name}")
    else:
        raise AttributeError(f"module 'equijax' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
