"""SpeechBrain Brains: the shared base, the multi-crop path, DINO / contrastive, AAM fine-tuning."""
