"""Recipe plumbing: one-line errors from DataLoader workers, packaged hparams, presets, tied YAML
values and the architecture an export records."""
import os
import textwrap

import pytest
from speechbrain.dataio.dataloader import make_dataloader

from speechbrain_dino.config.exits import data_error_message
from speechbrain_dino.config.loading import HPARAMS_FOLDER, find_hparams, load_hparams
from speechbrain_dino.data.crops import random_crop_pipeline
from speechbrain_dino.data.dataio import dataset_from_rows
from speechbrain_dino.errors import DataError
from speechbrain_dino.inference.export import Architecture


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



def test_hparams_paths_name_the_project_yamls_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_hparams("hparams/demo/dino_ecapa.yaml") == os.path.join(HPARAMS_FOLDER, "demo", "dino_ecapa.yaml")
    (tmp_path / "hparams").mkdir()
    (tmp_path / "hparams" / "verification.yaml").write_text("a: 1\n")
    assert find_hparams("hparams/verification.yaml") == "hparams/verification.yaml"  # a local file first
    with pytest.raises(DataError, match="hparams file not found"):
        find_hparams("hparams/none.yaml")


def test_overrides_go_on_top_of_a_complete_yaml_and_extends_is_one_clear_error(tmp_path):
    (tmp_path / "base.yaml").write_text(textwrap.dedent("""
        size: 8
        schedule: {lr: 0.1, warmup: 2}
        width: !ref <size> * 2
    """))
    hparams_file, overrides, hparams = load_hparams(tmp_path / "base.yaml", "size: 2\nschedule: {lr: 0.7}")
    assert hparams_file == str(tmp_path / "base.yaml")
    assert hparams == {"size": 2, "schedule": {"lr": 0.7, "warmup": 2}, "width": 4}
    assert load_hparams(tmp_path / "base.yaml", overrides)[2] == hparams  # what an experiment folder saves
    (tmp_path / "small.yaml").write_text("extends: base.yaml\nsize: 2\n")
    with pytest.raises(DataError, match="'extends:' is no longer supported.*speechbrain_dino.config.presets"):
        load_hparams(tmp_path / "small.yaml")


def test_the_demo_dino_yaml_ties_its_values_and_exports_what_it_builds(tmp_path):
    overrides = {"train_csv": "x.csv", "output_folder": str(tmp_path / "out"), "embedding_dim": 48, "n_global_crops": 3,
                 "student": {"channels": [32, 32, 32, 32, 96]}, "student_head": {"hidden_size": 64}}
    hparams_file, resolved, hparams = load_hparams("hparams/demo/dino_ecapa.yaml", overrides)
    assert os.path.samefile(hparams_file, os.path.join(HPARAMS_FOLDER, "demo", "dino_ecapa.yaml"))
    assert hparams["student_head"].mlp[0].in_features == 48 and hparams["teacher_head"].mlp[2].in_features == 64
    assert hparams["crops"].n_global == hparams["dino_loss"].n_global_crops == 3
    assert hparams["teacher"] is not hparams["student"]  # !copy: a second encoder of the same architecture
    assert hparams["modules"]["teacher"] is hparams["teacher"]
    architecture = Architecture.from_yaml(hparams_file, resolved, "teacher")
    assert architecture.encoder_class == "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
    assert architecture.encoder_kwargs["lin_neurons"] == 48 and architecture.encoder_kwargs["input_size"] == 40
    assert architecture.encoder_kwargs["channels"] == [32, 32, 32, 32, 96]
    assert architecture.fbank_kwargs == {"n_mels": 40, "sample_rate": 16000}
    rebuilt = architecture.build_encoder()
    assert rebuilt.state_dict().keys() == hparams["teacher"].state_dict().keys()
    assert all(rebuilt.state_dict()[key].shape == value.shape for key, value in hparams["teacher"].state_dict().items())
