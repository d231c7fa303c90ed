"""From manifest rows to training batches: datasets, multi-crop sampling, augmentation."""
