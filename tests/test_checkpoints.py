"""AtomicCheckpointer: checkpoints are complete or invisible; recovery falls back past broken ones."""
import errno
import logging

import pytest
import torch

from speechbrain_dino.errors import DataError
from speechbrain_dino.training import checkpoints
from speechbrain_dino.training.checkpoints import STAGING_PREFIX, AtomicCheckpointer


def checkpointer(folder, value):
    module = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(module.weight, value)
    return AtomicCheckpointer(folder, recoverables={"model": module}), module


def test_a_saved_checkpoint_is_published_complete(tmp_path):
    saver, _ = checkpointer(tmp_path, 1.0)
    checkpoint = saver.save_checkpoint()
    assert checkpoint.path.name.startswith("CKPT+")
    assert sorted(p.name for p in checkpoint.path.iterdir()) == ["CKPT.yaml", "model.ckpt"]
    assert checkpoint.paramfiles["model"] == checkpoint.path / "model.ckpt"
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

    loader, module = checkpointer(tmp_path, 0.0)
    with caplog.at_level(logging.WARNING, logger=checkpoints.__name__):
        recovered = loader.recover_if_possible()
    assert recovered.path == good.path
    assert torch.all(module.weight == 1.0)
    assert not staging.exists()
    assert "interrupted" in caplog.text and f"incomplete checkpoint {partial}" in caplog.text


def test_a_full_disk_during_a_save_is_one_clear_error_and_keeps_the_previous(tmp_path, monkeypatch):
    saver, _ = checkpointer(tmp_path, 1.0)
    good = saver.save_checkpoint()

    def no_space(obj, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(DataError, match="No space left on device.*rerun to resume"):
        saver.save_checkpoint()
    assert [p.name for p in tmp_path.iterdir()] == [good.path.name]
