"""Build hook: cffi compiles core/gatt.c against include/pmp.h (out-of-line API mode).

Everything else about the package lives in pyproject.toml.
"""

from setuptools import setup

setup(cffi_modules=["core/_build_ffi.py:ffibuilder"])
