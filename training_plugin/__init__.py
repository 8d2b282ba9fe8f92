"""training_plugin: run every training script as a pytest item."""
