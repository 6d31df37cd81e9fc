"""Run folders on disk: the resolved recipe, the metrics rows and the checkpoint."""
