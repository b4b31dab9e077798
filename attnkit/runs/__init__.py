"""The run format: a training run's config (TOML tables) and its checkpoints on disk."""
