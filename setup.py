"""Build hook for the one C extension, ``imgscope._tarscan`` (the scanner's fast path).

Everything else lives in ``pyproject.toml``.  The extension is optional: where
no C compiler is at hand the build still succeeds and the scanner runs its
pure-Python loop, which gives the same results, only slower.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("imgscope._tarscan", ["imgscope/_tarscan.c"], optional=True)])
