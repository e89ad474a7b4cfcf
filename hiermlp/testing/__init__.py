"""Independent reference formulations and test helpers, shared by the tests and the benchmarks.

Each reference is written from the paper and the official code's public layout (its parameter names), not
from hiermlp's modules, so converting its weights with hiermlp's loader and comparing outputs is a real
check. Nothing here is imported by the library itself.
"""
