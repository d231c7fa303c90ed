"""Each recipe's table of checked settings (see :mod:`speechbrain_dino.config.settings`), and the keys
each recipe reads from its YAML.

Table keys are the YAMLs' (dotted for nested ones); a key a recipe's YAML does not have is
rejected by HyperPyYAML itself, so the tables only say which values each key accepts. The
``*_KEYS`` tuples list what a recipe (and its Brain) reads without a default: a YAML of one's own
that lacks one stops with one line naming it, before any work.
"""
from __future__ import annotations

from speechbrain_dino.config.settings import (
    COUNT,
    FLAG,
    FRACTION,
    NON_NEGATIVE,
    NON_NEGATIVE_COUNT,
    POSITIVE,
    SEED,
    Nested,
    Setting,
    SettingsTable,
)
from speechbrain_dino.pseudo_labels.config import AUTO
from speechbrain_dino.training.brains.ssl import EXPORTED_ENCODERS, TEACHER_AUGMENTATIONS
from speechbrain_dino.training.clipping import CLIPPING_MODES
from speechbrain_dino.training.dino import PROTOTYPE_MODES, TARGET_METHODS

_AUDIO: SettingsTable = {
    "sample_rate": COUNT,
    "resample": FLAG,
    "num_workers": NON_NEGATIVE_COUNT,
    "seed": SEED,
}

#: A weight of an optional term (0: off), or null where the YAML allows it.
_WEIGHT = NON_NEGATIVE
_NULLABLE_WEIGHT = Setting(float, low=0, nullable=True)
_NULLABLE_FRACTION = Setting(float, low=0, high=1, nullable=True)
_NULLABLE_POSITIVE = Setting(float, low=0, open_low=True, nullable=True)

_TRAINING: SettingsTable = {
    **_AUDIO,
    "batch_size": COUNT,
    "number_of_epochs": COUNT,
    "ckpts_to_keep": COUNT,
    "max_grad_norm": NON_NEGATIVE,
    "gradient_clipping": Setting(str, choices=CLIPPING_MODES),
    "n_mels": COUNT,
    "schedule.base_lr": _NULLABLE_WEIGHT,  # null: from lr_per_256
    "schedule.lr_per_256": _NULLABLE_POSITIVE,
    "schedule.final_lr": NON_NEGATIVE,
    "schedule.warmup_epochs": NON_NEGATIVE,
    "schedule.weight_decay": NON_NEGATIVE,
    "schedule.final_weight_decay": NON_NEGATIVE,
    "augment.noise_prob": FRACTION,
    "augment.reverb_prob": FRACTION,
    "augment.independent_babble": FLAG,
}

_EXTRACTION: SettingsTable = {
    **_AUDIO,
    "max_batch_seconds": Setting(float, low=0, open_low=True, nullable=True),
}

TRAIN_DINO: SettingsTable = {
    **_TRAINING,
    "embedding_dim": COUNT,
    "n_prototypes": COUNT,
    "n_global_crops": COUNT,
    "export_encoder": Setting(str, choices=EXPORTED_ENCODERS),
    "crops.n_global": COUNT,
    "crops.n_local": NON_NEGATIVE_COUNT,
    "crops.global_seconds": POSITIVE,
    "crops.local_seconds": POSITIVE,
    "crops.window_factor": Setting(float, low=1, nullable=True),  # null: the whole utterance
    "crops.spread_global": FLAG,
    "schedule.teacher_momentum": FRACTION,
    "schedule.final_teacher_momentum": FRACTION,
    "schedule.teacher_temperature": POSITIVE,
    "schedule.final_teacher_temperature": POSITIVE,
    "schedule.teacher_temperature_warmup_epochs": NON_NEGATIVE,
    "schedule.freeze_last_layer_epochs": NON_NEGATIVE,
    "schedule.teacher_momentum_horizon_epochs": _NULLABLE_POSITIVE,
    "student_head.use_bn": FLAG,
    "student_head.input_bn": FLAG,
    "student_head.expander_size": Setting(int, low=1, nullable=True),
    "student_head.prototypes": Setting(str, choices=PROTOTYPE_MODES),
    "student_head.prototype_weight_decay": FLAG,
    "dino_loss.targets": Setting(str, choices=TARGET_METHODS),
    "dino_loss.sinkhorn_iterations": COUNT,
    "dino_loss.student_sees_global": FLAG,
    "share_prototypes": FLAG,
    "teacher_augmentation": Setting(str, choices=TEACHER_AUGMENTATIONS),
    "variance_covariance_weight": _WEIGHT,
    "variance_covariance_start_weight": _NULLABLE_WEIGHT,
    "variance_covariance_warmup_fraction": FRACTION,
    "koleo_weight": _WEIGHT,
    "mean_entropy_weight": _WEIGHT,
    "embedding_cosine_weight": _WEIGHT,
    "embedding_cosine_warmup_fraction": FRACTION,
    "contrastive_weight": _WEIGHT,
    "contrastive_decay_fraction": _NULLABLE_FRACTION,
}

TRAIN_AAM: SettingsTable = {
    **_TRAINING,
    "crop_seconds": POSITIVE,
    "subcenters": COUNT,
    "examples_per_class": Setting(float, low=0, open_low=True, nullable=True),
    "min_epochs": COUNT,
    "schedule.frozen_share": FRACTION,
    "schedule.warmup_share": FRACTION,
    "schedule.head_lr": NON_NEGATIVE,
    "schedule.full_lr": NON_NEGATIVE,
    "schedule.margin": Setting(float, low=0, high=1, open_high=True),
    "schedule.margin_warmup_share": FRACTION,
}

PSEUDO_LABEL: SettingsTable = {
    **_EXTRACTION,
    "max_seconds": Setting(float, low=0, open_low=True, nullable=True),
    "clustering.pca_variance": Setting(float, low=0, high=1, open_low=True, nullable=True),
    "clustering.kmeans_ratio": Setting(float, low=0, high=1, open_low=True),
    "clustering.kmeans_iter": COUNT,
    "clustering.ahc_threshold": Setting(float, low=-1, high=1, choices=(AUTO,)),  # a cosine, or from the data
    "clustering.knn": COUNT,
    "clustering.plda_second_pass": FLAG,
    "clustering.plda_threshold": Setting(float),
    "clustering.member_quantile": Setting(float, low=0, high=1, open_high=True),
    "clustering.keep_fraction": Setting(float, low=0, high=1, open_low=True, nullable=True),
    "clustering.min_size": Setting(int, low=1, choices=(AUTO,)),
    "clustering.max_size": Setting(int, low=1, nullable=True),
}

EVAL_VERIFICATION: SettingsTable = {
    **_EXTRACTION,
    "chunk_seconds": Setting(float, low=0, open_low=True, nullable=True),
    "as_norm_top_n": Setting(int, low=1, nullable=True),
    "bootstrap_draws": Setting(int, low=0),
}

EVAL_EMOTION: SettingsTable = {
    **_EXTRACTION,
    "chunk_seconds": Setting(float, low=0, open_low=True, nullable=True),
    "folds": Setting(int, low=2),
    "inner_folds": Setting(int, low=2),
    "drop_unlabelled": FLAG,
    "classifier": Setting(str, choices=("logreg", "mlp")),
}

RUN_PIPELINE: SettingsTable = {
    "seed": SEED,
    "rounds": NON_NEGATIVE_COUNT,
    "round_gate.heldout_share": Setting(float, low=0, high=1, open_low=True, open_high=True, nullable=True),
    "verbose": FLAG,
    "pretraining_name": Setting(str),
    "pretraining_description": Setting(str, nullable=True),
    "warm_start_overrides": Nested(TRAIN_DINO),
    "pretraining_overrides": Nested(TRAIN_DINO),
    "pseudo_label_overrides": Nested(PSEUDO_LABEL),
    "aam_overrides": Nested(TRAIN_AAM),
    "emotion_overrides": Nested(EVAL_EMOTION),
}



_EXTRACTION_KEYS = ("seed", "pretrained_path", "output_folder", "sample_rate", "resample", "max_batch_seconds",
                    "num_workers")
_TRAINING_KEYS = ("output_folder", "save_folder", "train_csv", "sample_rate", "resample", "number_of_epochs",
                  "train_dataloader_opts", "opt_class", "schedule", "brain_class", "modules", "epoch_counter",
                  "train_logger", "checkpointer")
TRAIN_DINO_KEYS = (*_TRAINING_KEYS, "crops", "compute_features", "mean_var_norm")
TRAIN_AAM_KEYS = (*_TRAINING_KEYS, "init_from", "crop_seconds", "subcenters", "examples_per_class", "min_epochs",
                  "aam_loss", "head_submodules")
PSEUDO_LABEL_KEYS = (*_EXTRACTION_KEYS, "train_csv", "max_seconds", "clustering")
EVAL_VERIFICATION_KEYS = (*_EXTRACTION_KEYS, "chunk_seconds", "test_csv", "trials", "cohort_csv", "system_name",
                          "baselines", "as_norm_top_n", "bootstrap_draws")
EVAL_EMOTION_KEYS = (*_EXTRACTION_KEYS, "chunk_seconds", "data_csv", "system_name", "baselines", "protocol", "folds",
                     "inner_folds", "drop_unlabelled", "classifier")
RUN_PIPELINE_KEYS = ("seed", "output_folder", "train_csv", "test_csv", "trials", "emotion_csv", "rounds",
                     "pretraining_hparams", "pseudo_label_hparams", "aam_hparams", "verification_hparams",
                     "emotion_hparams")
#: Pipeline keys renamed when the pretraining stage stopped being DINO only (old -> new).
RUN_PIPELINE_RENAMED = {"dino_hparams": "pretraining_hparams", "dino_overrides": "pretraining_overrides"}
