"""The trivial baselines a trained potential must beat: per-element linear energies, zero forces."""

from __future__ import annotations

import numpy as np
from ase.data import chemical_symbols

from equijax.data.structures import LabeledStructure


def per_element_linear_baseline(
    train: list[LabeledStructure], test: list[LabeledStructure], skip_unseen: bool = False
) -> dict:
    """Fit energy per atom ~ Σ_e x_e w_e (x_e: fraction of element e) on ``train``; score ``test``.

    Least squares without intercept (fractions sum to one, so an intercept is redundant) on the
    train structures that have an energy. Structures without a label are left out of the metric
    that needs it.

    Returns:
        dict with
          ``"energy_mae_per_atom"``: test MAE of energy per atom, eV/atom;
          ``"energy_rmse_per_atom"``: test RMSE of energy per atom, eV/atom;
          ``"force_mae_zero"``: test MAE of predicting zero forces, eV/Å (mean over all
          components), or None when no test structure has forces;
          ``"stress_mae_zero"``: test MAE of predicting zero stress, GPa, or None;
          ``"coefficients"``: ``{symbol: w_e}``, eV/atom;
          ``"n_train"``, ``"n_test"``: structures with energies used in the fit / the score;
          ``"n_unseen"``: test structures left out because they hold an element absent from
          train (only with ``skip_unseen``; a small set of many elements has some).

    Raises:
        ValueError: if train or test has no energies, or (without ``skip_unseen``) a test
            structure (named by id) contains an element absent from train.
    """
    train_e = [s for s in train if s.energy is not None]
    test_e = [s for s in test if s.energy is not None]
    if not train_e:
        raise ValueError("per_element_linear_baseline: no train structure has an energy")
    if not test_e:
        raise ValueError("per_element_linear_baseline: no test structure has an energy")
    elements = np.unique(np.concatenate([s.atoms.numbers for s in train_e]))
    n_unseen = 0
    if skip_unseen:
        seen = set(elements.tolist())
        kept = [s for s in test_e if set(s.atoms.numbers.tolist()) <= seen]
        n_unseen = len(test_e) - len(kept)
        test_e = kept
        if not test_e:
            raise ValueError("per_element_linear_baseline: every test structure has new elements")
    x_train = _fractions(train_e, elements)
    y_train = np.array([s.energy / s.n_atoms for s in train_e])
    weights, *_ = np.linalg.lstsq(x_train, y_train, rcond=None)
    x_test = _fractions(test_e, elements)
    errors = x_test @ weights - np.array([s.energy / s.n_atoms for s in test_e])
    forces = [s.forces.ravel() for s in test if s.forces is not None]
    stresses = [s.stress.ravel() for s in test if s.stress is not None]
    return {
        "energy_mae_per_atom": float(np.mean(np.abs(errors))),
        "energy_rmse_per_atom": float(np.sqrt(np.mean(errors**2))),
        "force_mae_zero": float(np.mean(np.abs(np.concatenate(forces)))) if forces else None,
        "stress_mae_zero": float(np.mean(np.abs(np.concatenate(stresses)))) if stresses else None,
        "coefficients": {
            chemical_symbols[z]: float(w) for z, w in zip(elements, weights, strict=True)
        },
        "n_train": len(train_e),
        "n_test": len(test_e),
        "n_unseen": n_unseen,
    }


def _fractions(structures: list[LabeledStructure], elements: np.ndarray) -> np.ndarray:
    """(n_structures, n_elements) composition fractions; raises for elements outside ``elements``."""
    column = {int(z): j for j, z in enumerate(elements)}
    x = np.zeros((len(structures), len(elements)))
    for i, s in enumerate(structures):
        numbers, counts = np.unique(s.atoms.numbers, return_counts=True)
        unknown = [chemical_symbols[z] for z in numbers if int(z) not in column]
        if unknown:
            raise ValueError(
                f"structure {s.id!r}: elements {unknown} do not occur in the "
                "baseline's training set"
            )
        for z, c in zip(numbers, counts, strict=True):
            x[i, column[int(z)]] = c / s.n_atoms
    return x


def fit_atomref(structures: list[LabeledStructure], n_elements: int = 94) -> np.ndarray:
    """Per-element energies (n_elements,) float32, eV: least squares of energy per atom on
    composition fractions (chgnet's AtomRef fit; ``n_elements`` is the AtomRef's size,
    `equijax.nn.readout.MAX_ELEMENTS`). Structures without an energy are skipped; elements
    absent from the data get 0, and no labelled structure at all gives zeros."""
    rows, targets = [], []
    for s in structures:
        if s.energy is None:
            continue
        counts = np.bincount(s.atoms.numbers - 1, minlength=n_elements)
        rows.append(counts / len(s.atoms))
        targets.append(s.energy / len(s.atoms))
    if not rows:
        return np.zeros(n_elements, np.float32)
    weights = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)[0]
    return weights.astype(np.float32)
