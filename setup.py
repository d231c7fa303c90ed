"""Installs the speechbrain_dino package, with its recipes (speechbrain_dino.recipes) and hparams YAMLs."""
from setuptools import find_packages, setup

setup(
    name="speechbrain-dino",
    version="0.1.0",
    description=(
        "DINO self-supervised utterance-level speech embeddings, iterative pseudo-labelling "
        "and evaluation, as a SpeechBrain recipe plugin"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # the repository's top-level hparams/ ships inside the package as speechbrain_dino/hparams/
    packages=find_packages(include=["speechbrain_dino", "speechbrain_dino.*"]) + ["speechbrain_dino.hparams"],
    package_dir={"speechbrain_dino.hparams": "hparams"},
    package_data={"speechbrain_dino.hparams": ["*.yaml", "demo/*.yaml"]},
    python_requires=">=3.9",
    install_requires=[
        "speechbrain>=1.1,<1.2",
        "torch>=2.1",
        "torchaudio>=2.1",
        "hyperpyyaml>=1.2",
        "numpy>=1.24",
        "scikit-learn>=1.3",
        "tqdm>=4.60",
        "soundfile>=0.12",
    ],
    extras_require={
        "faiss": ["faiss-cpu>=1.7"],
        "plots": ["matplotlib>=3.7"],
        # sbdino-export-onnx (onnx, onnxscript: the exporter) and running its models (onnxruntime)
        "onnx": ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"],
        "test": ["pytest>=7", "matplotlib>=3.7"],
    },
    entry_points={
        "console_scripts": [
            "sbdino-prepare=speechbrain_dino.prepare.__main__:main",
            "sbdino-synthetic=speechbrain_dino.synthetic.__main__:main",
            "sbdino-make-trials=speechbrain_dino.verification.make_trials:main",
            "sbdino-embed=speechbrain_dino.inference.embed:main",
            "sbdino-cluster=speechbrain_dino.inference.cluster:main",
            "sbdino-export-onnx=speechbrain_dino.inference.onnx_export:main",
        ]
    },
)
