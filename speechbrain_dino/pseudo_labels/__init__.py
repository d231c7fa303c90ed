"""Pseudo speaker labels from utterance embeddings: clustering, PLDA, refinement, filtering,
metrics against true labels (reported only), and the relabelled manifest."""
