"""Reading side of the data: cache (open + validate), loader (training batches), grid (index <-> factors), sector (Sector2D)."""
