"""Interfaces: the `ridgerider` command line (and, with the API issue, HTTP)."""

import ridgerider  # noqa: F401  first, before anything loads numpy: it pins OpenBLAS's kernels
