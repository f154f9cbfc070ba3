"""Training targets and inputs: weight maps, loss, augmentation and the tile sampler."""
