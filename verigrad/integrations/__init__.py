"""Optional integrations (pytest; later PyTorch, JAX, Dask), imported only when used."""
