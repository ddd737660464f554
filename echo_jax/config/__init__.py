"""The configuration schema (defaults), its validation and config-file loading."""
