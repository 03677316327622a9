"""Raw dataset files -> uniform zarr caches (see ../shared/docs/DESIGN.md, cache contract)."""
