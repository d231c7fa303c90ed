"""Every hparams file is a complete HyperPyYAML experiment: plain ``load_hyperpyyaml`` loads it and
it holds every key its recipe reads; the small ``demo/`` files are what the preset writer makes of
the paper-scale ones; the DINO-family files differ from DINO only in their method."""
from __future__ import annotations

import glob
import os

import pytest
import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml.comments import CommentedMap, TaggedScalar

from speechbrain_dino.config import recipe_settings
from speechbrain_dino.config.loading import HPARAMS_FOLDER
from speechbrain_dino.config.presets import PRESETS, generated

YAMLS = sorted(glob.glob(os.path.join(HPARAMS_FOLDER, "**", "*.yaml"), recursive=True))
#: file name -> the keys its recipe reads (every other file trains with train_dino)
RECIPE_KEYS = {"pipeline.yaml": recipe_settings.RUN_PIPELINE_KEYS, "pseudo_label.yaml": recipe_settings.PSEUDO_LABEL_KEYS,
               "train_aam.yaml": recipe_settings.TRAIN_AAM_KEYS, "verification.yaml": recipe_settings.EVAL_VERIFICATION_KEYS,
               "emotion.yaml": recipe_settings.EVAL_EMOTION_KEYS}
#: DINO-family file -> the top-level keys in which it may differ from dino_ecapa.yaml (its method)
METHOD_KEYS = {
    "rdino_ecapa.yaml": {"student_head", "aux_terms"},
    "sdpn_ecapa.yaml": {"n_global_crops", "number_of_epochs", "schedule", "n_prototypes", "student_head", "dino_loss",
                        "share_prototypes", "teacher_augmentation", "aux_terms"},
    "dino_cosine_ecapa.yaml": {"teacher_augmentation", "aux_terms"},
}
#: What the contrastive baseline shares with DINO: data, crops, features, encoder, augmentation, optimiser.
SHARED_WITH_CONTRASTIVE = ["sample_rate", "number_of_epochs", "batch_size", "train_dataloader_opts",
                           "max_grad_norm", "gradient_clipping", "opt_class", "n_mels", "embedding_dim",
                           "compute_features", "mean_var_norm", "student", "augment"]


def tree(path):
    with open(path, encoding="utf-8") as fin:
        return ruamel.yaml.YAML().load(fin)


def plain(node):
    """A ruamel node as comparable values: tags kept, comments dropped."""
    tag = getattr(getattr(node, "tag", None), "value", None)
    if isinstance(node, TaggedScalar):
        return (tag, node.value)
    if isinstance(node, CommentedMap):
        return (tag, {key: plain(value) for key, value in node.items()})
    if isinstance(node, list):
        return [plain(item) for item in node]
    return node


@pytest.mark.parametrize("path", YAMLS, ids=lambda path: os.path.relpath(path, HPARAMS_FOLDER))
def test_every_yaml_loads_with_plain_hyperpyyaml_and_holds_the_keys_its_recipe_reads(path, tmp_path):
    placeholders = {key: str(tmp_path / key) for key, value in tree(path).items()
                    if isinstance(value, TaggedScalar) and value.tag.value == "!PLACEHOLDER"}
    with open(path, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, placeholders)
    assert "extends" not in hparams
    keys = RECIPE_KEYS.get(os.path.basename(path), recipe_settings.TRAIN_DINO_KEYS)
    assert [key for key in keys if key not in hparams] == []


def test_the_small_experiments_are_what_the_preset_writer_makes_of_the_paper_scale_files():
    stale = [path for path, text in generated(HPARAMS_FOLDER).items()
             if open(os.path.join(HPARAMS_FOLDER, path), encoding="utf-8").read() != text]
    assert stale == [], "regenerate with: python -m speechbrain_dino.config.presets --write"
    assert {preset.path for preset in PRESETS} == {os.path.relpath(path, HPARAMS_FOLDER) for path in YAMLS
                                                   if "/demo/" in path and not path.endswith("pipeline.yaml")}


@pytest.mark.parametrize("name", sorted(METHOD_KEYS))
def test_a_dino_family_yaml_differs_from_dino_only_in_its_method(name):
    dino, other = tree(os.path.join(HPARAMS_FOLDER, "dino_ecapa.yaml")), tree(os.path.join(HPARAMS_FOLDER, name))
    differing = {key for key in set(dino) & set(other) if plain(dino[key]) != plain(other[key])}
    assert differing <= METHOD_KEYS[name]
    only_in_other = {key for key in set(other) - set(dino)}
    assert all(key.split("_weight")[0].split("_warmup")[0].split("_start")[0] in plain(other["aux_terms"])[1]["modules"][1]
               for key in only_in_other), only_in_other  # its own terms' weights only


@pytest.mark.parametrize("folder", ["", "demo"])
def test_the_contrastive_baseline_shares_dinos_data_encoder_and_optimiser(folder, tmp_path):
    paths = [os.path.join(HPARAMS_FOLDER, folder, f"{name}_ecapa.yaml") for name in ("dino", "contrastive")]
    dino, contrastive = (tree(path) for path in paths)
    assert [key for key in SHARED_WITH_CONTRASTIVE if plain(dino[key]) != plain(contrastive[key])] == []
    placeholders = {"output_folder": str(tmp_path), "train_csv": "x"}
    crops = [load_hyperpyyaml(open(path, encoding="utf-8"), placeholders)["crops"] for path in paths]
    assert crops[0] == crops[1]
