"""Optional integrations (pytest; later PyTorch, JAX, Dask), imported only when used."""

from typing import Any, Callable, Mapping


def map_nested(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """``leaf`` applied inside mappings, lists and tuples (sequences come back as lists); the
    frameworks' ``to_numpy`` share this walk and differ only in their leaf."""
    if isinstance(value, Mapping):
        return {k: map_nested(v, leaf) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [map_nested(v, leaf) for v in value]
    return leaf(value)
