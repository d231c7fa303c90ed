"""Emotion recognition from frozen embeddings: speaker-independent folds, probes, evaluation."""
