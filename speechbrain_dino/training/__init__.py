"""Training: the objectives (DINO, NT-Xent, AAM-softmax) as plain torch modules, their schedules,
the teacher's EMA, checkpointed RNG states and epoch statistics, and the SpeechBrain Brains."""
