"""TensorBoard and W&B scalar loggers, read back from the files they write with independent
readers of the two formats (TFRecord events; W&B's LevelDB-log records)."""

from __future__ import annotations

import glob
import struct

import numpy as np
import pytest

from equijax.training.scalar_loggers import (
    TensorBoardLogger,
    WandbLogger,
    record_scalars,
)

RECORDS = [
    {"split": "train", "step": 1, "loss": 2.5, "lr": 1e-3, "structures_per_s": 40.0},
    {"split": "train", "step": 2, "loss": 1.5, "lr": 9e-4, "data_wait": 0.01, "stage": "one"},
    {"split": "val", "step": 2, "mae_energy": 0.03, "mae_forces": 0.2, "improved": True},
]


def _expected() -> dict[tuple[str, int], float]:
    want = {}
    for record in RECORDS:
        step, scalars = record_scalars(record)
        want.update({(tag, step): value for tag, value in scalars.items()})
    return want


def test_records_become_split_tagged_scalars():
    step, scalars = record_scalars(RECORDS[1])
    assert step == 2
    assert scalars == {"train/loss": 1.5, "train/lr": 9e-4, "train/data_wait": 0.01}
    assert record_scalars(RECORDS[2])[1] == {"val/mae_energy": 0.03, "val/mae_forces": 0.2}


def _tfrecords(path: str):
    """Payloads of a TFRecord file: u64 length, u32 crc, data, u32 crc."""
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        yield data[pos + 12 : pos + 12 + length]
        pos += 12 + length + 4


def test_tensorboard_event_files_hold_every_scalar(tmp_path):
    from tensorboardX.proto import event_pb2

    logger = TensorBoardLogger(tmp_path / "tb")
    for record in RECORDS:
        logger.log(*record_scalars(record))
    logger.close()
    got = {}
    for path in glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*")):
        for payload in _tfrecords(path):
            event = event_pb2.Event.FromString(payload)
            for value in event.summary.value:
                got[value.tag, event.step] = value.simple_value
    want = _expected()
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key


def _wandb_records(path: str):
    """Payloads of a W&B run file: a 7-byte header, then LevelDB log records in 32 KiB blocks
    (u32 crc, u16 length, u8 type; types 1 full, 2 first, 3 middle, 4 last)."""
    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, pieces = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        pieces += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            yield pieces
            pieces = b""


def test_wandb_offline_run_holds_every_scalar(tmp_path, monkeypatch):
    from wandb.proto import wandb_internal_pb2

    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(tmp_path, project="equijax-test", mode="offline", config={"seed": 0})
    for record in RECORDS:
        logger.log(*record_scalars(record))
    logger.close()
    (path,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    got = {}
    for payload in _wandb_records(path):
        record = wandb_internal_pb2.Record.FromString(payload)
        if record.WhichOneof("record_type") != "history":
            continue
        # keys with a "/" come as nested keys
        items = {
            item.key or "/".join(item.nested_key): item.value_json for item in record.history.item
        }
        step = int(items.pop("_step", record.history.step.num))
        got.update({(k, step): float(v) for k, v in items.items() if not k.startswith("_")})
    want = _expected()
    assert set(got) == set(want)
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-12)


def test_bad_wandb_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="wandb mode"):
        WandbLogger(tmp_path, project="p", mode="sometimes")
