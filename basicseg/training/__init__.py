"""Train and evaluate the networks: lesion simulator, paired augmentation, training loop, evaluation."""
