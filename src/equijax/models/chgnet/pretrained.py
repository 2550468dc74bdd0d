"""Pretrained CHGNet: convert the checkpoints shipped inside the PyTorch ``chgnet`` package to
equijax params, and cache them with orbax so later loads need no torch."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import jax
import numpy as np

from equijax.models.chgnet.config import PRESETS, CHGNetConfig
from equijax.models.chgnet.model import CHGNet
from equijax.models.param_cache import default_cache_dir, restore_params, save_params

CHECKPOINTS = {
    "0.3.0": "0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
    "0.2.0": "0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar",
}
CACHE_FORMAT = 1


def _dense(sd: dict, prefix: str) -> dict:
    """A torch Linear (weight (out, in), optional bias) as a flax Dense param dict."""
    out = {"kernel": sd[f"{prefix}.weight"].T}
    if f"{prefix}.bias" in sd:
        out["bias"] = sd[f"{prefix}.bias"]
    return out


def _mlp(sd: dict, prefix: str) -> dict:
    """chgnet's ``MLP`` (a Sequential whose Linear layers sit at varying indices) as `MLP` params."""
    indices = sorted(
        {
            int(m.group(1))
            for k in sd
            if (m := re.fullmatch(re.escape(prefix) + r"\.layers\.(\d+)\.weight", k))
        }
    )
    if not indices:
        raise KeyError(f"no Linear layers under {prefix!r} in the checkpoint")
    return {f"Dense_{n}": _dense(sd, f"{prefix}.layers.{i}") for n, i in enumerate(indices)}


def _gated(sd: dict, prefix: str, norm: bool) -> dict:
    out = {"core": _mlp(sd, f"{prefix}.mlp_core"), "gate": _mlp(sd, f"{prefix}.mlp_gate")}
    if norm:
        out["norm_core"] = {"scale": sd[f"{prefix}.bn1.weight"], "bias": sd[f"{prefix}.bn1.bias"]}
        out["norm_gate"] = {"scale": sd[f"{prefix}.bn2.weight"], "bias": sd[f"{prefix}.bn2.bias"]}
    return out


def _conv(sd: dict, prefix: str, gated_name: str, norm: bool, with_out: bool = True) -> dict:
    out = {"gated_mlp": _gated(sd, f"{prefix}.{gated_name}", norm)}
    if with_out:
        out["mlp_out"] = _dense(sd, f"{prefix}.mlp_out.layers.1")
    return out


def convert_state_dict(state_dict: dict, config: CHGNetConfig, dtype=np.float32) -> dict:
    """Map a chgnet ``state_dict`` (tensors or arrays) to the `CHGNet` module's params.

    Every checkpoint entry must be used; a leftover key raises, so a silent mismatch is
    impossible.
    """
    sd = {
        k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=dtype)
        for k, v in state_dict.items()
    }
    gnorm = config.gMLP_norm == "layer"
    p: dict = {
        "atom_embedding": sd["atom_embedding.embedding.weight"],
        "rbf_ag": {"frequencies": sd["bond_basis_expansion.rbf_expansion_ag.frequencies"]},
        "rbf_bg": {"frequencies": sd["bond_basis_expansion.rbf_expansion_bg.frequencies"]},
        "bond_embedding": _dense(sd, "bond_embedding"),
        "bond_weights_ag": _dense(sd, "bond_weights_ag"),
        "bond_weights_bg": _dense(sd, "bond_weights_bg"),
        "angle_basis": {"frequencies": sd["angle_basis_expansion.fourier_expansion.frequencies"]},
        "angle_embedding": _dense(sd, "angle_embedding"),
        "magmom": {"site_wise": _dense(sd, "site_wise")},
        "energy_readout": {"mlp": _mlp(sd, "mlp")},
    }
    if not config.learnable_rbf:
        for name in ("rbf_ag", "rbf_bg", "angle_basis"):
            del p[name]
    if config.readout_norm == "layer":
        p["energy_readout"]["readout_norm"] = {
            "scale": sd["readout_norm.weight"],
            "bias": sd["readout_norm.bias"],
        }
    if config.composition_model:
        p["atomref"] = {"weights": sd["composition_model.fc.weight"][0]}
    for i in range(config.n_conv):
        p[f"atom_conv_{i}"] = _conv(sd, f"atom_conv_layers.{i}", "twoBody_atom", gnorm)
    for i in range(config.n_conv - 1):
        if config.update_bond:
            p[f"bond_conv_{i}"] = _conv(sd, f"bond_conv_layers.{i}", "twoBody_bond", gnorm)
            if config.update_angle:
                p[f"angle_update_{i}"] = _conv(
                    sd, f"angle_layers.{i}", "twoBody_bond", gnorm, with_out=False
                )
    used = _count_leaves(p)
    if used != len(sd):
        raise ValueError(
            f"checkpoint has {len(sd)} tensors but {used} were mapped: config mismatch"
        )
    return {"params": p}


def _count_leaves(tree) -> int:
    return sum(_count_leaves(v) for v in tree.values()) if isinstance(tree, dict) else 1


def _chgnet_checkpoint(version: str) -> tuple[dict, dict]:
    try:  # the PyTorch reference: only to convert, once (later loads use the orbax cache)
        import chgnet
        import torch
    except ImportError as err:
        raise ImportError(
            "converting a pretrained CHGNet needs the PyTorch chgnet package once "
            "(pip install 'equijax[reference]'); later loads use the orbax cache"
        ) from err
    path = Path(chgnet.__file__).parent / "pretrained" / CHECKPOINTS[version]
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state["model"]["state_dict"], state["model"]["model_args"]


def from_pretrained(
    version: str = "0.3.0", *, cache_dir: str | os.PathLike | None = None, dtype=np.float32
) -> tuple[CHGNet, dict]:
    """The pretrained CHGNet ``version`` ("0.3.0" or "0.2.0") as ``(module, params)``.

    The first call converts the checkpoint inside the ``chgnet`` package (needs torch) and saves
    the params with orbax under ``cache_dir`` (default `default_cache_dir`); later calls restore
    them without torch. ``dtype=np.float64`` gives double-precision params (use with x64).
    """
    if version not in CHECKPOINTS:
        raise ValueError(f"unknown CHGNet version {version!r}; available: {sorted(CHECKPOINTS)}")
    config = PRESETS[version]
    folder = Path(cache_dir or default_cache_dir()) / f"chgnet-{version}"
    meta = {"format": CACHE_FORMAT, "config": dataclasses.asdict(config)}
    params = restore_params(folder, meta)
    if params is None:
        state_dict, model_args = _chgnet_checkpoint(version)
        converted = CHGNetConfig.from_chgnet_args(model_args, mlp_out_bias=config.mlp_out_bias)
        if converted != config:
            raise ValueError(f"chgnet {version} model_args do not match the preset: {converted}")
        params = convert_state_dict(state_dict, config)
        save_params(folder, params, meta)
    params = jax.tree_util.tree_map(lambda x: np.asarray(x, dtype=dtype), params)
    return CHGNet(config), params
