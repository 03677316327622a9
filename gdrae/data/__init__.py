"""Reading side of the data.

cache (open, validate and verify a cache), schema (the cache layout the
writer shares), lifecycle (cache directories: written aside, swapped in,
restored, cleaned up), grid (index <-> factors), loader (training batches
from a cache), stream (what a training run streams: cache batches or
Sector2D points), sector (the Sector2D data), mixing (how well mixed a
stream of batches is).
"""
