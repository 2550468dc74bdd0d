"""sevenn checkpoints -> `NequIP` params: the config read from sevenn's checkpoint config, every
tensor of the state dict mapped (or the conversion raises).

sevenn (GPL-3.0) is only imported by `load_sevenn_checkpoint`, to read a checkpoint once; nothing
of it is copied here.
"""

from __future__ import annotations

import os

import e3nn_jax as e3nn
import numpy as np
from ase.data import atomic_numbers

from equijax.models.config import ConfigError
from equijax.models.e3nn_torch import linear_params
from equijax.models.nequip.config import NequIPConfig
from equijax.models.nequip.model import conv_filter
from equijax.nn.gate import gate_input_irreps
from equijax.nn.readout import MAX_ELEMENTS
from equijax.nn.uvu import e3nn_torch_order, uvu_irreps_out, uvu_num_weights, uvu_paths

# constants sevenn keeps in its state dict that the config or the code already determine
_DERIVED_SUFFIXES = (".output_mask", ".denominator")


def _irreps_after(irreps_x, irreps_sh, lmax: int, even_only: bool, mul: int) -> e3nn.Irreps:
    """``mul`` x each irrep of x ⊗ Y up to ``lmax`` (even only if asked), sorted."""
    found = sorted(
        {
            ir
            for _, a in irreps_x
            for _, b in irreps_sh
            for ir in a * b
            if ir.l <= lmax and (ir.p == 1 or not even_only)
        },
        key=e3nn_torch_order,
    )
    return e3nn.Irreps([(mul, ir) for ir in found])


def config_from_sevenn(cfg: dict, state_dict: dict | None = None, **overrides) -> NequIPConfig:
    """The `NequIPConfig` of a sevenn checkpoint's ``config`` dict (denominators from the state
    dict when given). Raises `ConfigError` for sevenn options this port does not have."""
    unsupported = {
        "interaction_type": (cfg.get("interaction_type", "nequip"), "nequip"),
        "self_connection_type": (cfg.get("self_connection_type"), "linear"),
        "readout_as_fcn": (cfg.get("readout_as_fcn", False), False),
        "use_bias_in_linear": (cfg.get("use_bias_in_linear", False), False),
        "_normalize_sph": (cfg.get("_normalize_sph", True), True),
        "use_modality": (cfg.get("use_modality", False), False),
    }
    for key, (value, wanted) in unsupported.items():
        if value != wanted:
            raise ConfigError(f"sevenn config {key}={value!r} is not supported (needs {wanted!r})")
    if cfg["radial_basis"]["radial_basis_name"] != "bessel":
        raise ConfigError(f"sevenn radial basis {cfg['radial_basis']} is not supported")
    species = tuple(str(s) for s in cfg["chemical_species"])
    type_map = cfg.get("_type_map")
    if type_map is not None:
        expected = {atomic_numbers[s]: i for i, s in enumerate(sorted(species))}
        if {int(k): int(v) for k, v in type_map.items()} != expected:
            raise ConfigError("sevenn _type_map is not the sorted order of chemical_species")
    lmax = cfg["lmax"]
    lmax_edge = cfg.get("lmax_edge", -1)
    lmax_edge = lmax_edge if lmax_edge > 0 else lmax
    lmax_node = cfg.get("lmax_node", -1)
    lmax_node = lmax_node if lmax_node > 0 else lmax
    n_layers = cfg["num_convolution_layer"]
    parity = bool(cfg["is_parity"])
    manual = cfg.get("irreps_manual", False)
    if manual:
        irreps = tuple(str(e3nn.Irreps(s)) for s in manual)
    else:
        sh = e3nn.Irreps.spherical_harmonics(lmax_edge, p=-1 if parity else 1)
        layers = [e3nn.Irreps(f"{cfg['channel']}x0e")]
        for t in range(n_layers):
            last = t == n_layers - 1
            layers.append(
                _irreps_after(layers[-1], sh, 0 if last else lmax_node, last, cfg["channel"])
            )
        irreps = tuple(str(x) for x in layers)
    if state_dict is not None:
        denominators = tuple(
            float(_np(state_dict[f"{t}_convolution.denominator"]).reshape(()))
            for t in range(n_layers)
        )
    else:
        raw = cfg.get("conv_denominator", cfg.get("avg_num_neigh"))
        raw = raw if isinstance(raw, list | tuple) else [raw] * n_layers
        denominators = tuple(float(np.float32(x)) for x in raw)
    if len(set(denominators)) == 1:
        denominators = denominators[:1]
    cutoff = cfg["cutoff_function"]
    values = dict(
        chemical_species=species,
        irreps=irreps,
        lmax=lmax_edge,
        is_parity=parity,
        cutoff=float(cfg["cutoff"]),
        num_radial=int(cfg["radial_basis"].get("bessel_basis_num", 8)),
        cutoff_function=cutoff["cutoff_function_name"],
        cutoff_on=float(cutoff.get("cutoff_on", 4.5)),
        poly_cut_p=int(cutoff.get("poly_cut_p_value", 6)),
        radial_hidden=tuple(int(h) for h in cfg["weight_nn_hidden_neurons"]),
        act_radial=cfg["act_radial"],
        act_scalar_even=cfg["act_scalar"]["e"],
        act_scalar_odd=cfg["act_scalar"]["o"],
        act_gate_even=cfg["act_gate"]["e"],
        act_gate_odd=cfg["act_gate"]["o"],
        conv_denominator=denominators,
    )
    values.update(overrides)
    return NequIPConfig(**values)


def _np(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def convert_state_dict(state_dict: dict, config: NequIPConfig, dtype=np.float32) -> dict:
    """Map a sevenn ``model_state_dict`` to `NequIP` params. Raises `ValueError` naming any
    tensor left unmapped, or a denominator that disagrees with ``config``."""
    sd = {k: _np(v) for k, v in state_dict.items()}
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in sd:
            raise ValueError(f"sevenn checkpoint lacks {key!r}: config mismatch")
        used.add(key)
        return np.asarray(sd[key], dtype)

    irreps = config.layer_irreps()
    sh = config.sh_irreps()
    n_types = len(config.chemical_species)
    p: dict = {
        "bessel_frequencies": take("edge_embedding.basis_function.coeffs"),
        "embedding": take("onehot_to_feature_x.linear.weight").reshape(n_types, irreps[0].dim),
    }
    for t in range(config.num_layers):
        x_in, gate_in = irreps[t], gate_input_irreps(irreps[t + 1])
        path_list = uvu_paths(x_in, sh, conv_filter(config, t), "cg")
        tp_out = uvu_irreps_out(path_list).simplify()
        hidden = (config.num_radial, *config.radial_hidden, uvu_num_weights(path_list))
        radial = {
            f"layer{k}": take(f"{t}_convolution.weight_nn.layer{k}.weight")
            for k in range(len(hidden) - 1)
        }
        for k, (n_in, n_out) in enumerate(zip(hidden[:-1], hidden[1:])):
            if radial[f"layer{k}"].shape != (n_in, n_out):
                raise ValueError(f"layer {t} radial layer {k}: shape {radial[f'layer{k}'].shape}")
        denominator = float(sd[f"{t}_convolution.denominator"].reshape(()))
        if not np.isclose(denominator, config.denominator(t), rtol=1e-7):
            raise ValueError(f"layer {t}: denominator {denominator} != {config.denominator(t)}")
        p[f"interaction_{t}"] = {
            "self_connection": linear_params(
                take(f"{t}_self_connection_intro.linear.weight"), x_in, gate_in
            ),
            "linear_1": linear_params(take(f"{t}_self_interaction_1.linear.weight"), x_in, x_in),
            "radial": {"weight_nn": radial},
            "linear_2": linear_params(
                take(f"{t}_self_interaction_2.linear.weight"), tp_out, gate_in
            ),
        }
    last = irreps[-1]
    hidden_irreps = e3nn.Irreps(f"{last.dim // 2}x0e")
    p["readout_hidden"] = linear_params(
        take("reduce_input_to_hidden.linear.weight"), last, hidden_irreps
    )
    p["readout_energy"] = linear_params(
        take("reduce_hidden_to_energy.linear.weight"), hidden_irreps, "1x0e"
    )
    shift, scale = take("rescale_atomic_energy.shift"), take("rescale_atomic_energy.scale")
    p["atomref"] = {"weights": _per_element(shift, config, 0.0, dtype)}
    p["energy_scale"] = _per_element(scale, config, 1.0, dtype)
    for key, value in sd.items():
        derived = key.endswith(_DERIVED_SUFFIXES) or "._w3j_" in key
        empty = value.size == 0
        if key not in used and not derived and not empty:
            raise ValueError(f"sevenn checkpoint tensor {key!r} {value.shape} was not mapped")
    return {"params": p}


def _per_element(values: np.ndarray, config: NequIPConfig, fill: float, dtype) -> np.ndarray:
    """Per-type values (sorted species order; one value means all) -> (94,) by atomic number."""
    species = sorted(config.chemical_species)
    values = np.broadcast_to(np.asarray(values, dtype).reshape(-1), (len(species),))
    out = np.full(MAX_ELEMENTS, fill, dtype)
    for value, symbol in zip(values, species):
        z = atomic_numbers[symbol]
        if z > MAX_ELEMENTS:
            raise ValueError(f"element {symbol} (Z={z}) is beyond equijax's {MAX_ELEMENTS}")
        out[z - 1] = value
    return out


def load_sevenn_checkpoint(checkpoint: str | os.PathLike) -> tuple[dict, dict]:
    """``(state_dict, config)`` of a sevenn checkpoint (a path or a sevenn pretrained name such
    as ``"7net-0"``), read by sevenn itself so that its upgrades of older checkpoints (e.g. the
    re-ordered convolution weights of sevenn < 0.11) apply. Needs torch and sevenn."""
    try:
        from sevenn.util import model_from_checkpoint
    except ImportError as err:
        raise ImportError(
            "converting a sevenn checkpoint needs the sevenn package once "
            "(pip install 'equijax[reference]'); later loads use the orbax cache"
        ) from err
    model, config = model_from_checkpoint(str(checkpoint))
    return model.state_dict(), config


def from_sevenn_model(model, config: dict, dtype=np.float32, **overrides):
    """``(NequIP module, params)`` of a sevenn model (``AtomGraphSequential``) and its config
    dict, e.g. a freshly built one with random weights."""
    from equijax.models.nequip.model import NequIP

    state_dict = model.state_dict()
    nequip_config = config_from_sevenn(config, state_dict, **overrides)
    return NequIP(nequip_config), convert_state_dict(state_dict, nequip_config, dtype)


def from_sevenn(checkpoint: str | os.PathLike, dtype=np.float32, **overrides):
    """``(NequIP module, params)`` of a sevenn checkpoint (path or sevenn pretrained name) of a
    supported kind; ``overrides`` replace config values that leave the params' shapes alone."""
    from equijax.models.nequip.model import NequIP

    state_dict, cfg = load_sevenn_checkpoint(checkpoint)
    config = config_from_sevenn(cfg, state_dict, **overrides)
    return NequIP(config), convert_state_dict(state_dict, config, dtype)
