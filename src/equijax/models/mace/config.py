"""`MACEConfig`: the hyperparameters of a MACE potential, named after mace-torch's model
arguments (``r_max``, ``hidden_irreps``, ``correlation``, ...), plus the layer choices that
Price-of-Freedom-style experiments swap; and packaged sizes."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import e3nn_jax as e3nn
import numpy as np

from equijax.models.config import BaseModelConfig, ConfigError
from equijax.nn.normalized_activation import ScaleConvention
from equijax.nn.tp import KINDS
from equijax.nn.uvu import e3nn_torch_order

TensorProductKind = Literal["cg", "gaunt_grid", "gaunt_fourier", "vector_gaunt"]
assert set(TensorProductKind.__args__) == set(KINDS)  # type: ignore[attr-defined]
InteractionKind = Literal["RealAgnosticInteractionBlock", "RealAgnosticResidualInteractionBlock"]


@dataclasses.dataclass(frozen=True)
class MACEConfig(BaseModelConfig):
    """Hyper-parameters of `MACE` (lengths in Å, energies in eV).

    ``atomic_numbers`` lists the elements in the order of the model's one-hot (mace's z table).
    ``hidden_irreps`` are the node features between layers, every block with the same number of
    channels; the last layer keeps only its scalars. The per-element reference energies (mace's
    E0s) are params (``atomref``), not config.
    """

    atomic_numbers: tuple[int, ...] = (1, 6, 7, 8)
    r_max: float = 5.0
    num_bessel: int = 8
    num_polynomial_cutoff: int = 5  # the envelope's p
    max_ell: int = 3  # of the edge spherical harmonics
    num_interactions: int = 2
    hidden_irreps: str = "32x0e+32x1o"
    mlp_irreps: str = "16x0e"  # the last layer's non-linear readout
    correlation: tuple[int, ...] = (3,)  # one number, or one per layer
    radial_mlp: tuple[int, ...] = (64, 64, 64)
    avg_num_neighbors: float = 8.0  # messages are divided by it
    interaction_first: InteractionKind = "RealAgnosticResidualInteractionBlock"
    interaction: InteractionKind = "RealAgnosticResidualInteractionBlock"
    gate: str = "silu"  # of the radial MLP is always silu (mace); this is the readout's
    # ScaleShiftMACE: site interaction energies are scale * e + shift (1 and 0: plain MACE)
    atomic_inter_scale: float = 1.0
    atomic_inter_shift: float = 0.0
    # the symmetric contraction (`equijax.nn.symmetric_contraction`) and the convolution's
    # tensor product (`equijax.nn.uvu`)
    contraction: Literal["cg", "gaunt_grid"] = "cg"
    tp: TensorProductKind = "cg"
    activation_scales: ScaleConvention = "e3nn-torch"
    forces: Literal["conservative"] = "conservative"
    # edges per step of the convolution's loop; null: all at once. Only speed and memory change.
    edge_chunk: int | None = 256

    FREE_OPTIONS: ClassVar[tuple[str, ...]] = ("forces", "edge_chunk")
    KEY_ALIASES: ClassVar[dict[str, str]] = {
        "MLP_irreps": "mlp_irreps",
        "radial_MLP": "radial_mlp",
        "interaction_cls_first": "interaction_first",
        "interaction_cls": "interaction",
        "cutoff": "r_max",
    }

    def __post_init__(self):
        super().__post_init__()
        try:
            hidden = e3nn.Irreps(self.hidden_irreps)
            mlp = e3nn.Irreps(self.mlp_irreps)
        except (ValueError, AssertionError) as err:
            raise ConfigError(f"config key 'model.hidden_irreps' or 'mlp_irreps': {err}") from None
        muls = {mul for mul, _ in hidden}
        z = self.atomic_numbers
        checks = [
            (len(z) >= 1 and all(0 < n < 119 for n in z), "atomic_numbers", "must be 1..118"),
            (len(set(z)) == len(z), "atomic_numbers", "has repeated elements"),
            (hidden.count("0e") > 0, "hidden_irreps", "needs scalars (0e)"),
            (len(muls) == 1, "hidden_irreps", "every block needs the same number of channels"),
            (all(ir.l == 0 for _, ir in mlp), "mlp_irreps", "must be scalars"),
            (self.num_interactions >= 1, "num_interactions", "must be >= 1"),
            (
                len(self.correlation) in (1, self.num_interactions),
                "correlation",
                "needs one number or one per layer",
            ),
            (all(c >= 1 for c in self.correlation), "correlation", "must be >= 1"),
            (self.max_ell >= 0, "max_ell", "must be >= 0"),
            (self.r_max > 0, "r_max", "must be > 0"),
            (self.num_bessel >= 1, "num_bessel", "must be >= 1"),
            (self.avg_num_neighbors > 0, "avg_num_neighbors", "must be > 0"),
            (self.edge_chunk is None or self.edge_chunk > 0, "edge_chunk", "must be > 0"),
        ]
        for ok, key, why in checks:
            if not ok:
                raise ConfigError(f"config key 'model.{key}': {why}, got {getattr(self, key)!r}")

    @property
    def atom_graph_cutoff(self) -> float:
        """Neighbour cutoff for graph construction, Å."""
        return self.r_max

    @property
    def num_features(self) -> int:
        """Channels per irrep block (mace's ``num_features``)."""
        return e3nn.Irreps(self.hidden_irreps).count("0e")

    def layer_correlation(self, layer: int) -> int:
        """The symmetric contraction's largest degree in ``layer``."""
        c = self.correlation
        return c[layer] if len(c) > 1 else c[0]

    def sh_irreps(self) -> e3nn.Irreps:
        """The edge spherical harmonics 0e + 1o + ... + max_ell."""
        return e3nn.Irreps.spherical_harmonics(self.max_ell)

    def interaction_irreps(self, layer: int) -> e3nn.Irreps:
        """The irreps the convolution of ``layer`` produces (``num_features`` x each harmonic;
        both parities after the first layer when the hidden features have odd scalars)."""
        sh = self.sh_irreps()
        if layer > 0 and e3nn.Irreps(self.hidden_irreps).count("0o") > 0:
            sh = e3nn.Irreps("+".join(f"{l}e+{l}o" for l in range(self.max_ell + 1)))
        irs = sorted({ir for _, ir in sh}, key=e3nn_torch_order)
        return e3nn.Irreps([(self.num_features, ir) for ir in irs])

    def layer_irreps_in(self, layer: int) -> e3nn.Irreps:
        """The node features entering ``layer``: the element embedding's scalars first."""
        if layer == 0:
            return e3nn.Irreps(f"{self.num_features}x0e")
        return e3nn.Irreps(self.hidden_irreps)

    def layer_irreps_out(self, layer: int) -> e3nn.Irreps:
        """The node features ``layer`` produces: the scalars of ``hidden_irreps`` in the last."""
        hidden = e3nn.Irreps(self.hidden_irreps)
        if layer == self.num_interactions - 1:
            return e3nn.Irreps([hidden[0]])
        return hidden

    def species_index(self) -> np.ndarray:
        """(119,) int32: atomic number -> one-hot index (-1 for an element the model lacks)."""
        table = np.full(119, -1, np.int32)
        for index, z in enumerate(self.atomic_numbers):
            table[z] = index
        return table

    def check_numbers(self, numbers) -> None:
        """Raise `ValueError` naming the elements of ``numbers`` this model has no weights for."""
        table = self.species_index()
        bad = sorted({int(z) for z in np.asarray(numbers) if not (0 < z < 119) or table[z] < 0})
        if bad:
            from ase.data import chemical_symbols

            names = [chemical_symbols[z] if 0 < z < 119 else str(z) for z in bad]
            raise ValueError(
                f"elements {', '.join(names)} are not among this MACE model's "
                f"{len(self.atomic_numbers)} elements"
            )


_MP_NUMBERS = tuple(range(1, 90))  # MACE-MP-0's z table: H..Ac

PRESETS = {
    # MACE-MP-0 "medium": 128 channels with l <= 1, correlation 3, 2 layers, r_max 6
    "mace-mp-0-medium": MACEConfig(
        atomic_numbers=_MP_NUMBERS,
        r_max=6.0,
        max_ell=3,
        num_interactions=2,
        hidden_irreps="128x0e+128x1o",
        correlation=(3,),
        avg_num_neighbors=61.96,
    ),
    # "small": 128 scalar channels
    "mace-mp-0-small": MACEConfig(
        atomic_numbers=_MP_NUMBERS,
        r_max=6.0,
        max_ell=3,
        num_interactions=2,
        hidden_irreps="128x0e",
        correlation=(3,),
        avg_num_neighbors=61.96,
    ),
}
"""Architectures of the MACE-MP-0 sizes (no weights: mace's foundation models are downloaded at
run time by mace-torch, which equijax does not do)."""
