"""Train steps of one global batch on several meshes, from the same initial params.

Usage: ``python data_parallel_steps.py OUT.npz N_STEPS MESH_SIZE [MESH_SIZE ...] -- OVERRIDES``.
XLA_FLAGS (device count) must be set by the caller. For each mesh size ``n``, the same 16
structures of a 40-structure EMT set are split with ``device_batch(..., n, policy)`` and trained
for N_STEPS steps (warm-up 1 step: the first update has learning rate 0); the losses, metrics,
final state (and the optimizer state after step 1) go to OUT.npz under ``d{n}/...`` keys, with
the eval metrics of every mesh on one set of params (the first mesh's final params).

In a multi-process run (``jax.distributed`` env: EQUIJAX_TEST_COORDINATOR, EQUIJAX_TEST_NPROC,
EQUIJAX_TEST_PID), mesh size 0 means all global devices, and every process writes its own copy of
the (replicated) results to OUT.npz with ``.{pid}`` inserted before the suffix.
"""

from __future__ import annotations

import os
import sys

import jax

if os.environ.get("EQUIJAX_TEST_COORDINATOR"):
    jax.distributed.initialize(
        coordinator_address=os.environ["EQUIJAX_TEST_COORDINATOR"],
        num_processes=int(os.environ["EQUIJAX_TEST_NPROC"]),
        process_id=int(os.environ["EQUIJAX_TEST_PID"]),
        initialization_timeout=120,
    )

import numpy as np  # noqa: E402

from equijax.data import generate_emt_dataset  # noqa: E402
from equijax.graphs import BucketPolicy, atoms_to_graph  # noqa: E402
from equijax.training.batches import device_batch  # noqa: E402
from equijax.training.config import OptimConfig, load_config  # noqa: E402
from equijax.training.model_setup import atomref_weights, build_model  # noqa: E402
from equijax.training.step import (  # noqa: E402
    init_state,
    make_eval_step,
    make_mesh,
    make_optimizer,
    make_train_step,
    replicate,
    shard_batch,
)


def local(x):
    """A host copy of a (replicated) array, also when it spans several processes."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def flat(prefix, tree):
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {f"{prefix}{jax.tree_util.keystr(path)}": local(leaf) for path, leaf in leaves}


def main():
    sep = sys.argv.index("--") if "--" in sys.argv else len(sys.argv)
    out, n_steps, sizes = sys.argv[1], int(sys.argv[2]), [int(a) for a in sys.argv[3:sep]]
    config = load_config(None, sys.argv[sep + 1 :])
    structures = generate_emt_dataset(40, seed=0, progress=False)
    graphs = [
        atoms_to_graph(
            s.atoms, config.model.config.atom_graph_cutoff, config.model.config.bond_graph_cutoff
        )
        for s in structures
    ]
    index = np.random.default_rng(1).permutation(len(structures))[:16]
    policy = BucketPolicy(growth=1.25, multiple=16)
    module = build_model(config.model)
    optimizer = make_optimizer(OptimConfig(learning_rate=5e-3, warmup_steps=1), total_steps=20)

    results = {
        "process_count": jax.process_count(),
        "process_index": jax.process_index(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
    }
    params0 = eval_params = None
    for n in sizes:
        mesh = make_mesh(n)
        graph, targets, groups = device_batch(graphs, structures, index, mesh.size, policy)
        if params0 is None:  # the same initial params for every mesh
            example = jax.tree_util.tree_map(lambda x: x[0], graph)
            params0 = jax.jit(module.init)(jax.random.key(0), example)
            params0 = jax.tree_util.tree_map(np.asarray, params0)
            params0["params"]["atomref"]["weights"] = atomref_weights(structures)
            results["init"] = 1
            results.update(flat("init", params0))
        key = f"d{mesh.size}"
        results[f"{key}/groups"] = np.concatenate(groups)
        results[f"{key}/group_sizes"] = np.array([len(g) for g in groups])
        state = replicate(mesh, init_state(params0, optimizer, seed=0))
        train_step = make_train_step(module, optimizer, config.loss, mesh, ema_decay=0.9)
        g, t = shard_batch(mesh, graph), shard_batch(mesh, targets)
        metrics = []
        for i in range(n_steps):
            state, m = train_step(state, g, t)
            metrics.append({k: float(local(v)) for k, v in m.items()})
            if i == 0:  # Adam's first moment after one step is 0.1 * the gradient
                results.update(flat(f"{key}/state1", state.opt_state))
        for name in metrics[0]:
            results[f"{key}/train/{name}"] = np.array([m[name] for m in metrics])
        results.update(flat(f"{key}/state", state))
        if eval_params is None:  # every mesh evaluates the same params: the first run's final ones
            eval_params = jax.tree_util.tree_map(local, state.params)
        eval_step = make_eval_step(module, config.loss, mesh)
        for name, v in eval_step(replicate(mesh, eval_params), g, t).items():
            results[f"{key}/eval/{name}"] = local(v)
        print(key, "losses", results[f"{key}/train/loss"].tolist(), flush=True)
    if jax.process_count() > 1:
        root, ext = os.path.splitext(out)
        out = f"{root}.{jax.process_index()}{ext}"
    np.savez(out, **results)


if __name__ == "__main__":
    main()
