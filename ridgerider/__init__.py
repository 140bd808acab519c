"""ridgerider: find many genuinely different minima of a loss by riding negative-curvature ridges.

The engine package: pure torch + scipy + networkx. It imports nothing from the service
packages (`workers`, `storage`, `api`), so it can be used and tested as a plain library.
"""

__version__ = "0.1.0"
