"""Configuration: every default (default.toml) and the validation-error helper all layers use."""
