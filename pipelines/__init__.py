"""Raw dataset files -> uniform zarr caches (docs/design.md section 3, the cache contract)."""
