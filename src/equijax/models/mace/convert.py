"""mace-torch models -> `MACE` params: the config read from the torch module, every tensor of the
state dict mapped (or the conversion raises).

The symmetric contraction's weights are re-expressed in equijax's basis: mace's ``U_matrix_ν``
and equijax's `equijax.nn.symmetric_contraction.symmetric_basis` span the same symmetric
polynomials (mace's may hold dependent columns), so ``K A = U`` is solved once by least squares
and checked exact. mace-torch is only imported where a torch model is passed in; nothing of it
is copied here.
"""

from __future__ import annotations

import e3nn_jax as e3nn
import jax
import numpy as np

from equijax.models.config import ConfigError
from equijax.models.e3nn_torch import linear_params
from equijax.models.mace.config import MACEConfig
from equijax.models.mace.model import MACE, RESIDUAL, element_linear_weights
from equijax.nn.readout import MAX_ELEMENTS
from equijax.nn.symmetric_contraction import fold_to_monomials, symmetric_basis
from equijax.nn.uvu import uvu_irreps_out, uvu_num_weights, uvu_paths

# buffers that the config or the code already determine
_DERIVED = ("output_mask", "U_matrix_", "_zeroed", "_w3j_", "r_max", "prefactor", "bessel_weights")
_DERIVED += ("cutoff_fn.p", "atomic_numbers", "num_interactions", "scale_shift.")


def _np(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _scalar(value) -> float:
    return float(_np(value).reshape(-1)[0])


def config_from_torch(model, **overrides) -> MACEConfig:
    """The `MACEConfig` of a mace-torch ``MACE`` / ``ScaleShiftMACE``. Raises `ConfigError`
    naming a mace option this port does not have."""
    name = type(model).__name__
    if name not in ("MACE", "ScaleShiftMACE"):
        raise ConfigError(f"only mace's MACE and ScaleShiftMACE convert, got {name}")
    flags = {
        "heads": (list(getattr(model, "heads", ["Default"])), ["Default"]),
        "pair_repulsion": (hasattr(model, "pair_repulsion"), False),
        "use_so3": (getattr(model, "use_so3", False), False),
        "use_agnostic_product": (getattr(model, "use_agnostic_product", False), False),
        "use_last_readout_only": (getattr(model, "use_last_readout_only", False), False),
        "edge_irreps": (getattr(model, "edge_irreps", None), None),
        "apply_cutoff": (getattr(model, "apply_cutoff", True), True),
        "joint_embedding": (hasattr(model, "joint_embedding"), False),
        "distance_transform": (hasattr(model.radial_embedding, "distance_transform"), False),
        "radial_type": (type(model.radial_embedding.bessel_fn).__name__, "BesselBasis"),
    }
    for key, (value, wanted) in flags.items():
        if value != wanted:
            raise ConfigError(f"mace option {key}={value!r} is not supported (needs {wanted!r})")
    kinds = [type(block).__name__ for block in model.interactions]
    for kind in kinds:
        if kind not in ("RealAgnosticInteractionBlock", RESIDUAL):
            raise ConfigError(f"mace interaction block {kind} is not supported")
    n_layers = len(model.interactions)
    if n_layers > 1 and len(set(kinds[1:])) != 1:
        raise ConfigError(f"mace layers after the first mix block types: {kinds}")
    readout = model.readouts[-1]
    mlp_irreps, act_name = MACEConfig.mlp_irreps, MACEConfig.gate
    if hasattr(readout, "non_linearity"):  # two or more layers: the last readout is an MLP
        act = readout.non_linearity.acts[0]
        act_name = getattr(getattr(act, "f", act), "__name__", str(act))
        mlp_irreps = str(readout.hidden_irreps)
    bessel = model.radial_embedding.bessel_fn
    r_max = _scalar(model.r_max)
    num_bessel = int(_np(bessel.bessel_weights).size)
    default = np.pi / r_max * np.arange(1, num_bessel + 1)
    if not np.allclose(_np(bessel.bessel_weights), default, rtol=1e-6):
        raise ConfigError("mace Bessel frequencies differ from n π / r_max (trained?): unsupported")
    hidden = (
        model.interactions[1].node_feats_irreps
        if n_layers > 1
        else model.products[0].linear.irreps_out
    )
    avg = {float(block.avg_num_neighbors) for block in model.interactions}
    if len(avg) != 1:
        raise ConfigError(f"mace layers differ in avg_num_neighbors: {sorted(avg)}")
    correlation = tuple(
        int(p.symmetric_contractions.contractions[0].correlation) for p in model.products
    )
    scale, shift = 1.0, 0.0
    if hasattr(model, "scale_shift"):
        if _np(model.scale_shift.scale).size != 1:
            raise ConfigError("mace multi-head scale/shift is not supported")
        scale, shift = _scalar(model.scale_shift.scale), _scalar(model.scale_shift.shift)
    values = dict(
        atomic_numbers=tuple(int(z) for z in _np(model.atomic_numbers)),
        r_max=r_max,
        num_bessel=num_bessel,
        num_polynomial_cutoff=int(_scalar(model.radial_embedding.cutoff_fn.p)),
        max_ell=int(model.spherical_harmonics.irreps_out.lmax),
        num_interactions=n_layers,
        hidden_irreps=str(hidden),
        mlp_irreps=mlp_irreps,
        correlation=correlation if len(set(correlation)) > 1 else correlation[:1],
        radial_mlp=tuple(int(h) for h in model.interactions[0].radial_MLP),
        avg_num_neighbors=avg.pop(),
        interaction_first=kinds[0],
        interaction=kinds[1] if n_layers > 1 else RESIDUAL,
        gate=act_name,
        atomic_inter_scale=scale,
        atomic_inter_shift=shift,
    )
    values.update(overrides)
    return MACEConfig(**values)


def element_linear_params(flat: np.ndarray, irreps_in, irreps_out, num_elements: int) -> dict:
    """e3nn's ``FullyConnectedTensorProduct(x, one-hot)`` flat weight -> `ElementLinear`
    params ``w{i}_{o}`` (mul_in, num_elements, mul_out)."""
    irreps_in, irreps_out = e3nn.Irreps(irreps_in), e3nn.Irreps(irreps_out)
    params, offset = {}, 0
    for i, o in element_linear_weights(irreps_in, irreps_out):
        shape = (irreps_in[i].mul, num_elements, irreps_out[o].mul)
        size = int(np.prod(shape))
        params[f"w{i}_{o}"] = flat[offset : offset + size].reshape(shape)
        offset += size
    if offset != flat.size:
        raise ValueError(f"skip_tp {irreps_in} -> {irreps_out}: {flat.size} weights, used {offset}")
    return params


def torch_basis_change(u_matrix: np.ndarray, irreps_in, ir_out, degree: int) -> np.ndarray:
    """(P, P_torch) ``A`` with ``symmetric_basis @ A == mace's U_matrix`` on the monomials.
    Raises `ValueError` when mace's couplings are not in equijax's span."""
    ir_out = e3nn.Irrep(ir_out)
    u = np.asarray(u_matrix, np.float64)
    if ir_out.dim == 1:
        u = u[..., None, :]  # mace drops the M axis of scalar outputs
    else:
        u = np.moveaxis(u, 0, -2)  # (M, d..., P) -> (d..., M, P)
    u = fold_to_monomials(u, degree)
    k = symmetric_basis(irreps_in, ir_out, degree)
    flat_k, flat_u = k.reshape(-1, k.shape[-1]), u.reshape(-1, u.shape[-1])
    a = np.linalg.lstsq(flat_k, flat_u, rcond=None)[0]
    error = np.abs(flat_k @ a - flat_u).max()
    if error > 1e-5 * max(np.abs(flat_u).max(), 1e-30):
        raise ValueError(
            f"mace's degree-{degree} couplings into {ir_out} are outside equijax's basis "
            f"(residual {error:.2e})"
        )
    return a


def convert_state_dict(model, config: MACEConfig, dtype=np.float32) -> dict:
    """Map a mace-torch model's tensors to `MACE` params. Raises `ValueError` naming any tensor
    left unmapped."""
    sd = {k: _np(v) for k, v in model.state_dict().items()}
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in sd:
            raise ValueError(f"mace model lacks {key!r}: config mismatch")
        used.add(key)
        return np.asarray(sd[key], np.float64)

    n_el, channels = len(config.atomic_numbers), config.num_features
    sh = config.sh_irreps()
    p: dict = {"node_embedding": take("node_embedding.linear.weight").reshape(n_el, channels)}
    for t in range(config.num_interactions):
        pre = f"interactions.{t}"
        h_in, target = config.layer_irreps_in(t), config.interaction_irreps(t)
        h_out = config.layer_irreps_out(t)
        kind = config.interaction_first if t == 0 else config.interaction
        path_list = uvu_paths(h_in, sh, [ir for _, ir in target], "cg")
        widths = (config.num_bessel, *config.radial_mlp, uvu_num_weights(path_list))
        radial = {}
        for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            radial[f"layer{k}"] = take(f"{pre}.conv_tp_weights.layer{k}.weight")
            if radial[f"layer{k}"].shape != (n_in, n_out):
                raise ValueError(f"{pre} radial layer {k}: shape {radial[f'layer{k}'].shape}")
        skip_in, skip_out = (h_in, h_out) if kind == RESIDUAL else (target, target)
        p[f"interaction_{t}"] = {
            "linear_up": linear_params(take(f"{pre}.linear_up.weight"), h_in, h_in),
            "conv_tp_weights": radial,
            "linear": linear_params(
                take(f"{pre}.linear.weight"), uvu_irreps_out(path_list), target
            ),
            "skip_tp": element_linear_params(
                take(f"{pre}.skip_tp.weight"), skip_in, skip_out, n_el
            ),
        }
        pre = f"products.{t}"
        one_channel = e3nn.Irreps([ir for _, ir in target])
        correlation = config.layer_correlation(t)
        product: dict = {"linear": linear_params(take(f"{pre}.linear.weight"), h_out, h_out)}
        for k, (_, ir) in enumerate(h_out):
            c = f"{pre}.symmetric_contractions.contractions.{k}"
            for nu in range(1, correlation + 1):
                key = (
                    f"{c}.weights_max"
                    if nu == correlation
                    else f"{c}.weights.{correlation - 1 - nu}"
                )
                w = take(key)  # (n_el, P_torch, C)
                u = take(f"{c}.U_matrix_{nu}")
                if symmetric_basis(one_channel, ir, nu).shape[-1] == 0:
                    if np.abs(u).max() > 0:
                        raise ValueError(f"{c}: degree {nu} into {ir} has couplings equijax lacks")
                    continue
                a = torch_basis_change(u, one_channel, ir, nu)
                product[f"weights_{ir}_{nu}"] = np.einsum("pk,ekc->epc", a, w)
        p[f"product_{t}"] = product
        if t < config.num_interactions - 1 or config.num_interactions == 1:
            p[f"readout_{t}"] = linear_params(take(f"readouts.{t}.linear.weight"), h_out, "0e")
        else:
            mlp = e3nn.Irreps(config.mlp_irreps)
            p[f"readout_{t}_hidden"] = linear_params(
                take(f"readouts.{t}.linear_1.weight"), h_out, mlp
            )
            p[f"readout_{t}"] = linear_params(take(f"readouts.{t}.linear_2.weight"), mlp, "0e")
    e0 = take("atomic_energies_fn.atomic_energies").reshape(-1)
    if e0.size != n_el:
        raise ValueError(f"mace E0s have {e0.size} values for {n_el} elements (multi-head?)")
    atomref = np.zeros(MAX_ELEMENTS)
    for value, z in zip(e0, config.atomic_numbers):
        if z > MAX_ELEMENTS:
            raise ValueError(f"element Z={z} is beyond equijax's {MAX_ELEMENTS}")
        atomref[z - 1] = value
    p["atomref"] = {"weights": atomref}
    for key, value in sd.items():
        derived = any(s in key for s in _DERIVED)
        if key not in used and not derived and value.size != 0:
            raise ValueError(f"mace tensor {key!r} {value.shape} was not mapped")
    params = {"params": p}
    return jax.tree_util.tree_map(lambda x: np.asarray(x, dtype), params)


def from_torch(model, dtype=np.float32, **overrides) -> tuple[MACE, dict]:
    """``(MACE module, params)`` of a mace-torch ``MACE`` or ``ScaleShiftMACE`` (random or
    trained) of the supported block types; ``overrides`` replace config values that leave the
    params' shapes alone (e.g. ``edge_chunk``). Run it with
    ``EquijaxCalculator(module, params)`` or `equijax.potential.Potential`."""
    config = config_from_torch(model, **overrides)
    return MACE(config), convert_state_dict(model, config, dtype)
