"""Hub-ready export (hub_folder.py: card + byte-sized parquet shards + identity splits) and
publishing with huggingface_hub (publish.py)."""
