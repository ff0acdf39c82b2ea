"""Training pipeline of the shipped acoustic model: corpora, synthesis, augmentation, training."""
