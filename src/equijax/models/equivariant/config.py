"""`EquivariantConfig`: the hyperparameters of the small equivariant potential, with the layer
choices that Facet-style comparisons swap."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import e3nn_jax as e3nn

from equijax.models.config import BaseModelConfig, ConfigError, Forces
from equijax.nn.direct_heads import valid_direct_norm

TensorProductKind = Literal["cg", "gaunt_grid", "gaunt_fourier", "vector_gaunt", "e3nn"]


@dataclasses.dataclass(frozen=True)
class EquivariantConfig(BaseModelConfig):
    """Hyper-parameters of `EquivariantPotential` (lengths in Å)."""

    channels: int = 16
    lmax: int = 2
    num_layers: int = 2
    cutoff: float = 5.0
    num_radial: int = 8
    radial_hidden: int = 32
    # `equijax.nn.tp` kind of the convolution ("e3nn": e3nn-jax's CG product, the baseline)
    tp: TensorProductKind = "gaunt_grid"
    radial: Literal["spline", "bessel-mlp"] = "spline"
    self_interaction: Literal["linear", "s2-mlp"] = "linear"
    parity: Literal["natural", "both"] = "natural"
    avg_num_neighbors: float = 20.0
    # per-element reference energies (AtomRef, zeros until fitted; training fits them)
    composition_model: bool = True
    forces: Forces = "conservative"  # or "direct": `DirectHeads` on the final invariants (no grad)
    # see `DirectHeads.stress` ("virial_only" is CHGNet's: the vector readout is no pair term)
    direct_stress: Literal["independent", "virial", "virial_detached"] = "independent"
    direct_norm: float = 1.0  # the direct pair weights are divided by this (`DirectHeads.norm`)

    # older training configs' names of two fields
    KEY_ALIASES: ClassVar[dict[str, str]] = {
        "spline_basis": "num_radial",
        "atom_graph_cutoff": "cutoff",
    }
    DIRECT_HEAD_OPTIONS: ClassVar[tuple[str, ...]] = ("direct_stress", "direct_norm")
    DIRECT_HEAD_PARAMS: ClassVar[tuple[str, ...]] = ("direct_heads", "force_readout")
    FREE_OPTIONS: ClassVar[tuple[str, ...]] = ("forces", *DIRECT_HEAD_OPTIONS)

    def __post_init__(self):
        super().__post_init__()
        checks = [
            (self.channels >= 1, "channels", "must be >= 1"),
            (self.lmax >= 0, "lmax", "must be >= 0"),
            (self.num_layers >= 1, "num_layers", "must be >= 1"),
            (self.cutoff > 0, "cutoff", "must be > 0"),
            (self.num_radial >= 1, "num_radial", "must be >= 1"),
            (valid_direct_norm(self.direct_norm), "direct_norm", "must be a finite number > 0"),
        ]
        for ok, key, why in checks:
            if not ok:
                raise ConfigError(f"config key 'model.{key}': {why}, got {getattr(self, key)!r}")

    @property
    def atom_graph_cutoff(self) -> float:
        """Neighbour cutoff for graph construction, Å (the model's ``cutoff``)."""
        return self.cutoff

    def hidden_irreps(self) -> e3nn.Irreps:
        """C x [0e + 1o + ... + L] (natural) or with both parities of every l."""
        parities = (1, -1) if self.parity == "both" else (None,)
        irreps = [
            (self.channels, (l, p if p is not None else (-1) ** l))  # noqa: E741
            for l in range(self.lmax + 1)
            for p in parities
        ]  # noqa: E741
        return e3nn.Irreps(irreps).regroup()
