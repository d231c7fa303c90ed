"""Speaker verification: trial lists (reading, writing, generating), cosine scoring and AS-norm,
EER / minDCF / DET, the evaluation of an embedding table, and validation during training."""
