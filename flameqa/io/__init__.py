"""I/O at the edges: table schemas, Parquet shards and markers, media probing and decoding."""
