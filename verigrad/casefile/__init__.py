"""Case files: reading and validating TOML into :mod:`verigrad.spec` records; scaffolding new ones."""
