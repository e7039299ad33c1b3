"""The compiled implementations: C GATT decoders (cffi) and numba kernels.

Same names and signatures as ``core.reference``; ``core`` re-exports one of the two.
"""
