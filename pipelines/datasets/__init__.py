"""The built-in datasets, one module each.

Every module here declares its dataset with ``SPEC`` (a ``DatasetSpec``) or,
for a family of names built by one converter, ``SPECS`` (name -> spec).
``pipelines.registry`` finds them by listing this folder, so adding a
built-in dataset is adding one module here (docs/datasets.md, "Adding a
dataset"). Modules keep heavy imports (torch, scipy.io) inside the
functions that read files, so the command line starts fast.
"""
