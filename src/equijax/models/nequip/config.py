"""`NequIPConfig`: the hyperparameters of a NequIP / SevenNet potential, named after the fields of
sevenn's checkpoint config where one exists, plus the layer choices that Facet-style experiments
swap; and the presets of the pretrained SevenNet models."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import e3nn_jax as e3nn
import numpy as np
from ase.data import atomic_numbers

from equijax.models.config import BaseModelConfig, ConfigError
from equijax.nn.normalized_activation import ScaleConvention
from equijax.nn.tp import KINDS

TensorProductKind = Literal["cg", "gaunt_grid", "gaunt_fourier", "vector_gaunt"]
assert set(TensorProductKind.__args__) == set(KINDS)  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class NequIPConfig(BaseModelConfig):
    """Hyper-parameters of `NequIP` (lengths in Å).

    ``irreps`` gives the node features before the first layer and after each layer
    (``num_layers + 1`` entries, sevenn's ``irreps_manual``); the last must be scalars. Element
    ``chemical_species`` are indexed in sorted (alphabetical) order, as sevenn's type map.
    """

    chemical_species: tuple[str, ...] = ("C", "H", "N", "O")
    irreps: tuple[str, ...] = ("32x0e", "32x0e+16x1e+8x2e", "32x0e+16x1e+8x2e", "32x0e")
    lmax: int = 2  # of the edge spherical harmonics
    is_parity: bool = False  # O(3) irreps (1o, 2e, ...) if True, else SO(3) only (all "e")
    cutoff: float = 5.0
    num_radial: int = 8  # Bessel functions (sevenn's bessel_basis_num), trainable frequencies
    cutoff_function: Literal["XPLOR", "poly_cut"] = "XPLOR"
    cutoff_on: float = 4.5  # XPLOR: the envelope is 1 below this, Å
    poly_cut_p: int = 6  # poly_cut: the polynomial order p
    # the radial network giving each layer's path weights: sevenn's MLP of the enveloped Bessel
    # basis, a linear map of that basis (Facet), or learnable cubic B-splines of the length
    radial: Literal["mlp", "linear", "spline"] = "mlp"
    radial_hidden: tuple[int, ...] = (64, 64)  # sevenn's weight_nn_hidden_neurons
    act_radial: str = "silu"
    act_scalar_even: str = "silu"
    act_scalar_odd: str = "tanh"
    act_gate_even: str = "silu"
    act_gate_odd: str = "tanh"
    # second-moment scale of the activations: e3nn (torch)'s Monte-Carlo numbers or exact ones
    activation_scales: ScaleConvention = "e3nn-torch"
    # messages summed at an atom are divided by this, per layer (sqrt of the average neighbour
    # count in SevenNet); one number is used for every layer
    conv_denominator: tuple[float, ...] = (6.0,)
    tp: TensorProductKind = "cg"  # the convolution's tensor product (`equijax.nn.uvu`)
    self_connection: Literal["linear", "s2mlp"] = "linear"
    # sevenn's readout: two linear maps (features -> half -> 1); "collapsed": their product, one
    readout: Literal["two_linear", "collapsed"] = "two_linear"
    forces: Literal["conservative"] = "conservative"
    # edges per step of the convolution's loop (`equijax.nn.uvu.uvu_convolution`); null: all at
    # once. Only speed and memory change.
    edge_chunk: int | None = 256

    FREE_OPTIONS: ClassVar[tuple[str, ...]] = ("forces", "edge_chunk")
    KEY_ALIASES: ClassVar[dict[str, str]] = {
        "irreps_manual": "irreps",
        "weight_nn_hidden_neurons": "radial_hidden",
        "bessel_basis_num": "num_radial",
    }

    def __post_init__(self):
        super().__post_init__()
        try:
            parsed = [e3nn.Irreps(s) for s in self.irreps]
        except (ValueError, AssertionError) as err:
            raise ConfigError(f"config key 'model.irreps': {err}") from None
        unknown = [s for s in self.chemical_species if s not in atomic_numbers]
        checks = [
            (len(parsed) >= 2, "irreps", "needs the input and at least one layer's irreps"),
            (
                all(ir.l == 0 for _, ir in parsed[-1]) if parsed else True,
                "irreps",
                "the last entry (the readout's input) must be scalars only",
            ),
            (
                all(ir.l == 0 for _, ir in parsed[0]) if parsed else True,
                "irreps",
                "the first entry (the element embedding) must be scalars only",
            ),
            (
                len(self.conv_denominator) in (1, len(parsed) - 1),
                "conv_denominator",
                "needs one number or one per layer",
            ),
            (all(d > 0 for d in self.conv_denominator), "conv_denominator", "must be > 0"),
            (self.lmax >= 0, "lmax", "must be >= 0"),
            (self.cutoff > 0, "cutoff", "must be > 0"),
            (
                0 < self.cutoff_on < self.cutoff or self.cutoff_function != "XPLOR",
                "cutoff_on",
                "must lie between 0 and cutoff",
            ),
            (self.num_radial >= 1, "num_radial", "must be >= 1"),
            (not unknown, "chemical_species", f"unknown element symbols {unknown}"),
            (
                len(set(self.chemical_species)) == len(self.chemical_species),
                "chemical_species",
                "has repeated elements",
            ),
        ]
        for ok, key, why in checks:
            if not ok:
                raise ConfigError(f"config key 'model.{key}': {why}, got {getattr(self, key)!r}")

    @property
    def atom_graph_cutoff(self) -> float:
        """Neighbour cutoff for graph construction, Å."""
        return self.cutoff

    @property
    def num_layers(self) -> int:
        """Number of interaction (convolution) layers."""
        return len(self.irreps) - 1

    def layer_irreps(self) -> list[e3nn.Irreps]:
        """The node irreps before the first layer and after each layer."""
        return [e3nn.Irreps(s) for s in self.irreps]

    def denominator(self, layer: int) -> float:
        """The divisor of layer ``layer``'s summed messages."""
        d = self.conv_denominator
        return d[layer] if len(d) > 1 else d[0]

    def sh_irreps(self) -> e3nn.Irreps:
        """The edge spherical harmonics: 0e + 1o + 2e + ... (O(3)) or 0e + 1e + 2e + ..."""
        return e3nn.Irreps.spherical_harmonics(self.lmax, p=-1 if self.is_parity else 1)

    def species_index(self) -> np.ndarray:
        """(119,) int32: atomic number -> type index (-1 for an element the model lacks)."""
        table = np.full(119, -1, np.int32)
        for index, symbol in enumerate(sorted(self.chemical_species)):
            table[atomic_numbers[symbol]] = index
        return table

    def check_numbers(self, numbers) -> None:
        """Raise `ValueError` naming the elements of ``numbers`` this model has no weights for."""
        table = self.species_index()
        numbers = np.asarray(numbers)
        bad = sorted({int(z) for z in numbers if not (0 < z < 119) or table[z] < 0})
        if bad:
            from ase.data import chemical_symbols

            names = [chemical_symbols[z] if 0 < z < 119 else str(z) for z in bad]
            raise ValueError(
                f"elements {', '.join(names)} are not among this NequIP model's "
                f"{len(self.chemical_species)} chemical species"
            )


_MPTRJ_SPECIES = tuple(
    "Ac Ag Al Ar As Au B Ba Be Bi Br C Ca Cd Ce Cl Co Cr Cs Cu Dy Er Eu F Fe Ga Gd Ge H He Hf Hg "
    "Ho I In Ir K Kr La Li Lu Mg Mn Mo N Na Nb Nd Ne Ni Np O Os P Pa Pb Pd Pm Pr Pt Pu Rb Re Rh "
    "Ru S Sb Sc Se Si Sm Sn Sr Ta Tb Tc Te Th Ti Tl Tm U V W Xe Y Yb Zn Zr".split()
)

PRESETS = {
    # SevenNet-0 (11Jul2024): 5 layers, lmax 2, XPLOR envelope, 842k parameters
    "sevennet-0": NequIPConfig(
        chemical_species=_MPTRJ_SPECIES,
        irreps=("128x0e",) + ("128x0e+64x1e+32x2e",) * 4 + ("128x0e",),
        lmax=2,
        cutoff=5.0,
        cutoff_function="XPLOR",
        cutoff_on=4.5,
        conv_denominator=(35.98957443237305,),
    ),
    # SevenNet-l3i5: lmax 3, polynomial envelope
    "sevennet-l3i5": NequIPConfig(
        chemical_species=_MPTRJ_SPECIES,
        irreps=("128x0e",) + ("128x0e+64x1e+32x2e+32x3e",) * 4 + ("128x0e",),
        lmax=3,
        cutoff=5.0,
        cutoff_function="poly_cut",
        conv_denominator=(35.984718322753906,),
    ),
}
"""Architectures of the pretrained SevenNet models (their weights come from the sevenn package)."""
