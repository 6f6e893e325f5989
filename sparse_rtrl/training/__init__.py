"""Training online: readouts, optimisers, the online loops, tasks, the trainer, run logs and checkpoints."""
