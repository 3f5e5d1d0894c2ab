"""Teacher models: the Teacher interface, loaders of the four formats, exporters, scoring."""
