"""ridgerider: find many genuinely different minima of a loss by riding negative-curvature ridges.

The engine package: pure torch + scipy + networkx. It imports nothing from the service
packages (`workers`, `storage`, `api`), so it can be used and tested as a plain library.
"""

import os
import platform

__version__ = "0.1.0"

# One BLAS kernel set in every process, set before numpy loads OpenBLAS (numpy's and scipy's;
# a user's own setting wins). OpenBLAS picks its kernels by CPU, and with its AVX-512 ones a
# pool worker and the in-process runner parted in the last bits of a point and then in the
# tree: 3 tests of tests/workers/test_pool.py failed on an AMD EPYC with AVX-512 (2026-12-07).
# With Haswell's kernels (AVX2), which every earlier machine of this project used, they pass:
# the pool's records are the in-process ones to the byte.
if platform.machine() in ("x86_64", "AMD64"):
    os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")
