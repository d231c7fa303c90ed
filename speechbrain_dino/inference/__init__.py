"""Using a trained encoder: the exported ``pretrained/`` folder, batched embedding extraction, the
baseline systems an evaluation compares with, and the ``sbdino-embed`` command line."""
