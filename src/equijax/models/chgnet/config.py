"""`CHGNetConfig`: CHGNet's hyperparameters, named as in ``chgnet.model.CHGNet``, and the
pretrained models' `PRESETS`."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from equijax.models.config import BaseModelConfig, ConfigError, Forces
from equijax.nn.direct_heads import valid_direct_norm, valid_trunk_grad
from equijax.nn.mlp import hidden_layers

Activation = Literal["silu", "relu", "tanh", "gelu", "softplus", "sigmoid"]
# how the direct stress uses the pair force weights (see `equijax.nn.direct_heads.DirectHeads`)
DirectStress = Literal["independent", "virial", "virial_detached", "virial_only"]


@dataclasses.dataclass(frozen=True)
class CHGNetConfig(BaseModelConfig):
    """Hyperparameters, named as in ``chgnet.model.CHGNet`` (defaults: the 0.3.0 model)."""

    atom_fea_dim: int = 64
    bond_fea_dim: int = 64
    angle_fea_dim: int = 64
    num_radial: int = 31
    num_angular: int = 31
    n_conv: int = 4
    atom_conv_hidden_dim: tuple[int, ...] = (64,)
    bond_conv_hidden_dim: tuple[int, ...] = (64,)
    angle_layer_hidden_dim: tuple[int, ...] = ()
    update_bond: bool = True
    update_angle: bool = True
    mlp_hidden_dims: tuple[int, ...] = (64, 64, 64)
    atom_graph_cutoff: float = 6.0
    bond_graph_cutoff: float = 3.0
    cutoff_coeff: float = 8.0
    learnable_rbf: bool = True
    non_linearity: Activation = "silu"
    gMLP_norm: Literal["layer"] | None = "layer"
    readout_norm: Literal["layer"] | None = "layer"
    conv_norm: Literal["layer"] | None = None
    mlp_out_bias: bool = False
    composition_model: bool = True
    is_intensive: bool = True
    # "conservative": forces/stress are derivatives of the energy (equijax.potential);
    # "direct": DirectHeads read them out of the final features (no derivatives; FastCHGNet)
    forces: Forces = "conservative"
    direct_hidden_dims: tuple[int, ...] = (64,)
    # direct stress: "independent" heads, or the pair forces' virial added ("virial": stress
    # labels also train the force weights; "virial_detached": they do not), or the virial alone
    # ("virial_only"); see DirectHeads
    direct_stress: DirectStress = "independent"
    # the direct pair (and angle) weights are divided by this (see DirectHeads.norm); 1 = plain
    direct_norm: float = 1.0
    # direct stress: add a three-body term over the bond graph's angles (`angle_stress`), weights
    # from an MLP of the last angle features, the two bonds' features and the centre atom's
    # features, divided by direct_norm
    direct_angle_stress: bool = False
    # direct forces: add three-body (non-central) terms over the bond graph's angles
    # (`angle_edge_gradient`), weights from an MLP of the same features as direct_angle_stress's, divided
    # by direct_norm; with a virial direct_stress their virial joins the stress, which makes
    # "virial_only" exact for CHGNet-like energies (see equijax.nn.direct_heads)
    direct_angle_forces: bool = False
    # a learned pair energy with this many radial functions (0: none) joins the energy; with direct
    # heads its exact forces (at fixed features) join the direct forces and, with a virial
    # direct_stress, its virial the stress, so force labels train part of the energy
    # (equijax.nn.pair_energy); a conservative model differentiates it like the rest
    direct_pair_energy: int = 0
    # a learned three-body energy over the bond graph's angles, with this many Chebyshev terms in
    # cos θ (0: none), joins the energy the same way (equijax.nn.angle_energy)
    direct_angle_energy: int = 0
    # the gradient the direct heads send into the trunk is multiplied by this (1: unchanged)
    direct_trunk_grad: float = 1.0
    # rematerialise each convolution block in the backward pass: with direct forces
    # equijax.nn.remat.remat_call (honoured by every XLA backend; about a third of the step's
    # memory on CPU), with conservative forces jax.checkpoint (which XLA:CPU undoes)
    remat: bool = False
    # the memory-lean energy + forces + stress (one derivative, as in MD and relaxations):
    # messages in pieces recomputed in the backward pass, with no pair-sized arrays
    # (equijax.models.chgnet.lean; see `pair_free_lean`), else every convolution block under
    # equijax.nn.remat.remat_call. `Potential` chooses it by itself (see Potential).
    lean_inference: bool = False
    # with lean_inference, the messages of each block run in pieces of this many edges/angles,
    # each recomputed in the backward pass (0: one piece). 4096 was the fastest on a 2-core CPU
    # (experiments/chgnet_md/README.md); smaller pieces also hold less memory.
    lean_chunk: int = 4096
    # messages' first layers multiply atom/bond features before gathering them onto edges and
    # angles (equijax.nn.chgnet; same function, ~3x fewer angle FLOPs); False: concatenate first
    factorized_messages: bool = True
    # the gated MLPs' core and gate first layers run as one product, so each gathered part is
    # multiplied and gathered once for both (equijax.nn.mlp.GatedMLP.fused; same function)
    fused_gates: bool = True

    # training configs' shorthand: when set, atom_conv_hidden_dim = bond_conv_hidden_dim =
    # (hidden_dim,)
    hidden_dim: int | None = None

    DENSE_ONLY: ClassVar[bool] = True  # every matmul is a flax Dense (precision emulation)
    # fields that shape only the direct heads (`as_conservative` resets them); not
    # direct_hidden_dims, which also sizes the learned energies' MLPs, a part of the energy
    DIRECT_HEAD_OPTIONS: ClassVar[tuple[str, ...]] = (
        "direct_stress",
        "direct_norm",
        "direct_angle_stress",
        "direct_angle_forces",
        "direct_trunk_grad",
    )
    DIRECT_HEAD_PARAMS: ClassVar[tuple[str, ...]] = (
        "direct_heads",
        "angle_stress_mlp",
        "angle_force_mlp",
    )
    # may differ from the run or pretrained model a run starts from: the heads, the learned
    # energy terms (new ones start at zero) and the memory/speed options (same function)
    FREE_OPTIONS: ClassVar[tuple[str, ...]] = (
        "forces",
        *DIRECT_HEAD_OPTIONS,
        "direct_hidden_dims",
        "direct_pair_energy",
        "direct_angle_energy",
        "remat",
        "lean_inference",
        "lean_chunk",
        "factorized_messages",
        "fused_gates",
    )

    def __post_init__(self):
        super().__post_init__()
        if self.lean_chunk < 0:
            raise ConfigError(f"config key 'model.lean_chunk': must be >= 0, got {self.lean_chunk}")
        if self.hidden_dim is not None:
            if self.hidden_dim < 1:
                raise ConfigError(
                    f"config key 'model.hidden_dim': must be >= 1, got {self.hidden_dim}"
                )
            for name in ("atom_conv_hidden_dim", "bond_conv_hidden_dim"):
                object.__setattr__(self, name, (self.hidden_dim,))
        for name in (
            "atom_conv_hidden_dim",
            "bond_conv_hidden_dim",
            "angle_layer_hidden_dim",
            "mlp_hidden_dims",
            "direct_hidden_dims",
        ):
            object.__setattr__(self, name, hidden_layers(getattr(self, name)))
        checks = [
            (self.n_conv >= 1, "n_conv", f"must be >= 1, got {self.n_conv}"),
            (
                0 < self.bond_graph_cutoff <= self.atom_graph_cutoff,
                "bond_graph_cutoff",
                "need 0 < bond_graph_cutoff <= atom_graph_cutoff",
            ),
            (
                all(w >= 1 for w in self.direct_hidden_dims),
                "direct_hidden_dims",
                "widths must be >= 1",
            ),
            (self.num_angular % 2 == 1, "num_angular", f"must be odd, got {self.num_angular}"),
            (
                valid_direct_norm(self.direct_norm),
                "direct_norm",
                f"must be a finite number > 0, got {self.direct_norm!r}",
            ),
            (
                valid_trunk_grad(self.direct_trunk_grad),
                "direct_trunk_grad",
                f"must be a finite number >= 0, got {self.direct_trunk_grad!r}",
            ),
            *[
                (
                    isinstance(getattr(self, name), int)
                    and not isinstance(getattr(self, name), bool)
                    and getattr(self, name) >= 0,
                    name,
                    f"must be an integer >= 0, got {getattr(self, name)!r}",
                )
                for name in ("direct_pair_energy", "direct_angle_energy")
            ],
        ]
        for ok, key, why in checks:
            if not ok:
                raise ConfigError(f"config key 'model.{key}': {why}")

    @property
    def pair_free_lean(self) -> bool:
        """Whether the lean mode is the pair-free one (`equijax.models.chgnet.lean`): no conv
        norm, conservative forces and no learned energy terms. It is then faster than the plain
        model as well as leaner, and `Potential` uses it at every size."""
        return (
            self.conv_norm is None
            and self.forces == "conservative"
            and not self.direct_pair_energy
            and not self.direct_angle_energy
        )

    @classmethod
    def from_chgnet_args(cls, model_args: dict[str, Any], **overrides) -> CHGNetConfig:
        """Build from a chgnet checkpoint's ``model_args`` (unknown or unsupported keys raise)."""
        if not model_args.get("mlp_first", True):
            raise ValueError(
                "only chgnet's mlp_first=True (sum of site energies) readout is supported"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in model_args.items() if k in names}
        kwargs["composition_model"] = model_args.get("composition_model") is not None
        kwargs.update(overrides)
        return cls(**kwargs)


PRESETS: dict[str, CHGNetConfig] = {
    "0.3.0": CHGNetConfig(),
    "0.2.0": CHGNetConfig(
        num_radial=9,
        num_angular=9,
        atom_graph_cutoff=5.0,
        cutoff_coeff=5.0,
        mlp_hidden_dims=(64, 64),
        gMLP_norm=None,
        readout_norm=None,
        mlp_out_bias=True,
    ),
}
