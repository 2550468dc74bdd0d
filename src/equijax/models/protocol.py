"""The model interface that `equijax.potential`, the calculator, training and the benchmarks rely
on, and nothing more: every registered model satisfies `Model`."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from equijax.graphs.crystal_graph import CrystalGraph
from equijax.models.config import BaseModelConfig
from equijax.typing import Array, AtomVectors, GraphTensors


@runtime_checkable
class Model(Protocol):
    """A ``flax.linen`` module mapping a padded, batched `CrystalGraph` to predictions.

    ``config`` (a `BaseModelConfig`) declares the graph cutoffs (``atom_graph_cutoff``,
    ``bond_graph_cutoff``, Å) and whether the model has direct heads (``is_direct``).

    Called as ``module.apply(params, graph, positions=None, cell=None)`` with optional
    positions (N, 3) Å and cells (G, 3, 3) Å that replace the graph's (strained ones, for
    forces and stress by autodiff), it returns a dict of:

    - ``energy`` (G,) eV, without the composition reference;
    - ``site_energies`` (N,) eV;
    - ``atomref`` (N,) eV, each atom's composition reference energy (zeros without one);
    - ``magmoms`` (N,) μB (zeros for models without magnetic moments);
    - with direct heads also ``forces`` (N, 3) eV/Å and ``stress`` (G, 3, 3) GPa.
    """

    config: BaseModelConfig

    def __call__(
        self,
        graph: CrystalGraph,
        positions: AtomVectors | None = None,
        cell: GraphTensors | None = None,
    ) -> dict[str, Array]: ...

    def init(self, rngs, *args, **kwargs): ...

    def apply(self, variables, *args, **kwargs): ...


def check_model(module) -> Model:
    """``module`` itself if it satisfies `Model`; else a `TypeError` saying what is missing."""
    config = getattr(module, "config", None)
    if not isinstance(module, Model) or not isinstance(config, BaseModelConfig):
        raise TypeError(
            f"{type(module).__name__} is not an equijax model: it needs a `config` "
            "deriving from equijax.models.config.BaseModelConfig and flax's "
            "init/apply (see equijax.models.protocol.Model)"
        )
    return module
