"""Dataset sources: each returns a `SourceData` of normalised tensors, decoded once."""

from clexp.data.base import DataError, SourceData

__all__ = ["DataError", "SourceData"]
