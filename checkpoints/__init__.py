"""Published checkpoints (manifest.toml), their verified loading, and model resolution."""
