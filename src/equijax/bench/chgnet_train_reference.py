"""The PyTorch chgnet side of `equijax bench chgnet-train`: its training steps timed on the same
structures and labels (the optional ``reference`` extra)."""

from __future__ import annotations

import time

import numpy as np

from equijax.bench.memory import PeakRSS


def chgnet_train_rate(labeled, batch_size: int, steps: int, memory: bool = False) -> dict:
    """Time ``steps`` training steps of the PyTorch chgnet (median, after one warm-up step).
    ``memory`` on a CPU: also the resident-memory growth of one more step (`PeakRSS`), measured
    as equijax's is."""
    try:  # optional reference (torch, chgnet): imported only when the reference runs
        import torch
        from chgnet.model import CHGNet as TorchCHGNet
        from chgnet.trainer.trainer import CombinedLoss
        from pymatgen.io.ase import AseAtomsAdaptor
    except ImportError as err:
        return {"available": False, "reason": f"reference extra not installed ({err})"}
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = TorchCHGNet.load(model_name="0.3.0", use_device=dev, verbose=False)
    graphs = [model.graph_converter(AseAtomsAdaptor.get_structure(s.atoms)) for s in labeled]
    labels = [
        {
            "e": torch.tensor(s.energy / len(s.atoms), dtype=torch.float32),
            "f": torch.tensor(s.forces, dtype=torch.float32),
            "s": torch.tensor(s.stress, dtype=torch.float32),
            "m": torch.tensor(s.magmoms, dtype=torch.float32),
        }
        for s in labeled
    ]
    model.train()
    loss_fn = CombinedLoss(
        target_str="efsm",
        criterion="Huber",
        delta=0.1,
        energy_loss_ratio=1,
        force_loss_ratio=1,
        stress_loss_ratio=0.1,
        mag_loss_ratio=0.1,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def train_step(k):
        idx = range(k * batch_size, (k + 1) * batch_size)
        for i in idx:
            graphs[i].atom_frac_coord.requires_grad = True
        batch = [graphs[i].to(dev) for i in idx]
        targets = {
            "e": torch.stack([labels[i]["e"] for i in idx]).to(dev),
            **{key: [labels[i][key].to(dev) for i in idx] for key in ("f", "s", "m")},
        }
        loss = loss_fn(targets, model(batch, task="efsm"))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if dev == "cuda":
            torch.cuda.synchronize()

    n_batches = len(labeled) // batch_size
    train_step(0)
    rss = None
    if memory and dev == "cpu":
        with PeakRSS() as rss:
            train_step(0)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for k in range(steps):
        t0 = time.perf_counter()
        train_step(k % n_batches)
        times.append(time.perf_counter() - t0)
    ms = 1e3 * float(np.median(times))
    return {
        "available": True,
        "device": dev,
        "ms_per_step": ms,
        "structures_per_s": batch_size / (ms / 1e3),
        "peak_memory_MB": torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else None,
        **({"step_rss_growth_MB": rss.growth_mb} if rss else {}),
    }


def timed_reference(labeled, batch_size: int, steps: int, memory: bool) -> dict:
    """`chgnet_train_rate` with a progress line, and torch's GPU cache emptied after it."""
    print("timing chgnet (torch), conservative ...", flush=True)
    ref = chgnet_train_rate(labeled, batch_size, steps, memory)
    if ref.get("device") == "cuda":
        import torch  # optional reference (torch): imported only when the reference ran on a GPU

        torch.cuda.empty_cache()
    if ref.get("available"):
        print(
            f"  {ref['ms_per_step']:.0f} ms/step, {ref['structures_per_s']:.1f} structures/s",
            flush=True,
        )
    return ref
