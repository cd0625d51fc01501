"""Training: one generic loop (checkpoint, resume, EMA, AMP) and one task per model kind."""
