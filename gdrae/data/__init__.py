"""Reading side of the data.

cache (open + validate a cache), staging (the directories a prepare passes
through), grid (index <-> factors), loader (training batches from a cache),
stream (what a training run streams: cache batches or Sector2D points),
sector (the Sector2D data), mixing (how well mixed a stream of batches is).
"""
