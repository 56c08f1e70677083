"""The UltraFace model: network, priors, pre/post-processing, and the registry of model ids."""
