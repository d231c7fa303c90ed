"""AtomicCheckpointer: checkpoints are complete or invisible; recovery falls back past broken ones;
a real write failure is one clear error; the published name is flushed to the disk."""
import logging
import os
import struct

import pytest
import torch
from conftest import file_size_limit

from speechbrain_dino.errors import DataError
from speechbrain_dino.training import checkpoints
from speechbrain_dino.training.checkpoints import STAGING_PREFIX, AtomicCheckpointer


def checkpointer(folder, value, width=2):
    """A checkpointer of two modules ("first" is loaded before "second"), weights set to ``value``."""
    modules = {name: torch.nn.Linear(width, width) for name in ("first", "second")}
    for module in modules.values():
        torch.nn.init.constant_(module.weight, value)
    return AtomicCheckpointer(folder, recoverables=modules), modules


def test_a_saved_checkpoint_is_published_complete(tmp_path):
    saver, _ = checkpointer(tmp_path, 1.0)
    checkpoint = saver.save_checkpoint()
    assert checkpoint.path.name.startswith("CKPT+")
    assert sorted(p.name for p in checkpoint.path.iterdir()) == ["CKPT.yaml", "first.ckpt", "second.ckpt"]
    assert checkpoint.paramfiles["first"] == checkpoint.path / "first.ckpt"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_recovery_skips_an_interrupted_save_and_an_incomplete_checkpoint(tmp_path, caplog):
    saver, _ = checkpointer(tmp_path, 1.0)
    good = saver.save_checkpoint()
    # a save killed before its rename, and a newer non-atomic checkpoint holding only CKPT.yaml
    staging = tmp_path / f"{STAGING_PREFIX}CKPT+9999"
    staging.mkdir()
    (staging / "CKPT.yaml").write_text("end-of-epoch: true\nunixtime: 9e12\n")
    partial = tmp_path / "CKPT+9999-legacy"
    partial.mkdir()
    (partial / "CKPT.yaml").write_text("end-of-epoch: true\nunixtime: 9e12\n")

    loader, modules = checkpointer(tmp_path, 0.0)
    with caplog.at_level(logging.WARNING, logger=checkpoints.__name__):
        recovered = loader.recover_if_possible()
    assert recovered.path == good.path
    assert torch.all(modules["first"].weight == 1.0)
    assert not staging.exists()
    assert "interrupted" in caplog.text and f"checkpoint {partial}: no first, second" in caplog.text


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path):
    """Flips a bit of the stored weight (2.0 everywhere): torch.load would load the wrong value."""
    data = bytearray(path.read_bytes())
    data[data.index(struct.pack("<4f", *[2.0] * 4))] ^= 0x01
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated model file": ("second.ckpt", truncate, "second.ckpt is truncated or damaged"),
    "corrupted model file": ("second.ckpt", flip_a_byte, "second.ckpt is truncated or damaged"),
    "empty model file": ("second.ckpt", lambda path: path.write_bytes(b""), "second.ckpt is empty"),
    "missing model file": ("second.ckpt", lambda path: path.unlink(), "no second"),
    "empty CKPT.yaml": ("CKPT.yaml", lambda path: path.write_text(""), "CKPT.yaml is empty"),
    "malformed CKPT.yaml": ("CKPT.yaml", lambda path: path.write_text("end-of-epoch: [true\n"), "cannot be read"),
    "CKPT.yaml without unixtime": ("CKPT.yaml", lambda path: path.write_text("end-of-epoch: true\n"), "lacks unixtime"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_recovery_falls_back_past_a_damaged_newest_checkpoint(tmp_path, caplog, damage):
    file_name, damage_file, reason = DAMAGE[damage]
    older = checkpointer(tmp_path, 1.0)[0].save_checkpoint(meta={"unixtime": 1.0})
    newest = checkpointer(tmp_path, 2.0)[0].save_checkpoint(meta={"unixtime": 2.0})
    damage_file(newest.path / file_name)

    loader, modules = checkpointer(tmp_path, 0.0)
    with caplog.at_level(logging.WARNING, logger=checkpoints.__name__):
        recovered = loader.recover_if_possible()
    assert recovered.path == older.path
    # every recoverable comes from the older checkpoint, also the one loaded before the damaged file
    assert torch.all(modules["first"].weight == 1.0) and torch.all(modules["second"].weight == 1.0)
    skipped = [record.getMessage() for record in caplog.records if "Skipping" in record.getMessage()]
    assert len(skipped) == 1 and str(newest.path) in skipped[0] and reason in skipped[0]
    assert newest.path.is_dir() and older.path.is_dir()


def test_checkpoints_that_all_fail_to_load_stop_the_run_instead_of_training_afresh(tmp_path):
    for unixtime in (1.0, 2.0):
        checkpoint = checkpointer(tmp_path, unixtime)[0].save_checkpoint(meta={"unixtime": unixtime})
        truncate(checkpoint.path / "first.ckpt")
    with pytest.raises(DataError, match="no checkpoint here can be loaded .2 damaged"):
        checkpointer(tmp_path, 0.0)[0].recover_if_possible()
    assert len(list(tmp_path.glob("CKPT+*"))) == 2


def test_an_intact_checkpoint_of_other_settings_is_one_clear_error(tmp_path):
    checkpointer(tmp_path, 1.0, width=2)[0].save_checkpoint()
    mismatch = "cannot load this checkpoint .RuntimeError: Error.s. in loading state_dict.*size mismatch"
    with pytest.raises(DataError, match=mismatch):
        checkpointer(tmp_path, 0.0, width=3)[0].recover_if_possible()


def test_a_real_write_failure_during_a_save_is_one_clear_error_and_keeps_the_previous(tmp_path):
    saver, _ = checkpointer(tmp_path, 1.0, width=64)  # each model file is about 17 kB
    good = saver.save_checkpoint()
    with file_size_limit(8000), pytest.raises(DataError) as raised:
        saver.save_checkpoint()
    message = str(raised.value)
    assert message.startswith(f"{tmp_path}: cannot write a checkpoint (torch.save failed: ")
    assert "a file-size limit of 8000 bytes is set" in message and "rerun to resume" in message
    assert [p.name for p in tmp_path.iterdir()] == [good.path.name]


def test_the_published_name_is_flushed_before_the_save_returns(tmp_path, monkeypatch):
    events = []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(os, "replace", lambda src, dst: (real_replace(src, dst), events.append(("replace", dst))))
    def fsync(fd):
        real_fsync(fd)
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

    monkeypatch.setattr(os, "fsync", fsync)
    checkpoint = checkpointer(tmp_path, 1.0)[0].save_checkpoint()
    published = events.index(("replace", checkpoint.path))
    assert ("fsync", str(tmp_path)) in events[published:]
    assert ("fsync", str(checkpoint.path.parent / (STAGING_PREFIX + checkpoint.path.name))) in events[:published]
