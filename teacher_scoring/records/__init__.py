"""The scored-shard contract shared with the student: record schema and manifest."""
