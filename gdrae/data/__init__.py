"""Reading side of the data: cache (open, validate, verify), schema (the cache layout the writer shares),
lifecycle (cache directories: written aside, swapped in, restored, cleaned up), loader (training batches),
grid (index <-> factors), sector (Sector2D)."""
