"""Training: the loop, its state and checkpoints written as it goes, and augmentation."""
