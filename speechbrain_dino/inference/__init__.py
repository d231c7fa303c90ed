"""Using a trained encoder: the exported ``pretrained/`` folder, batched embedding extraction, the
baseline systems an evaluation compares with, and the tools for use outside the recipes
(``sbdino-embed``, verification decisions at a recorded threshold, ONNX export, clustering a folder)."""
