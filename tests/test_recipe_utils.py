"""Recipe plumbing: errors raised in DataLoader workers still print as one line."""
import pytest

from speechbrain.dataio.dataloader import make_dataloader

from speechbrain_dino.data.crops import random_crop_pipeline
from speechbrain_dino.data.dataio import dataset_from_rows
from speechbrain_dino.errors import DataError
from speechbrain_dino.recipe_utils import data_error_message


def test_worker_data_errors_reduce_to_their_own_message(tmp_path):
    dataset = dataset_from_rows([{"ID": "a", "duration": "1.0", "wav": str(tmp_path / "gone.wav"), "spk_id": ""}])
    dataset.add_dynamic_item(random_crop_pipeline(1.0))
    dataset.set_output_keys(["sig"])
    loader = make_dataloader(dataset, batch_size=1, num_workers=1)
    with pytest.raises(DataError) as info:
        next(iter(loader))
    assert "Traceback" in str(info.value)  # what PyTorch makes of a worker's exception
    assert data_error_message(info.value) == f"{tmp_path / 'gone.wav'}: audio file not found"
    plain = DataError("bad row", "m.csv", 3)
    assert data_error_message(plain) == "m.csv, line 3: bad row"

