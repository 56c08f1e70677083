"""The core: errors, atomic files, isolation, images, the model, artifact metadata, the manifest and the Runner protocol.

It imports nothing above it (checkpoints, exporters, validation, pipeline, cli)."""
