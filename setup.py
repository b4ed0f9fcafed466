"""Builds the Cython extensions in python/csente/; all metadata lives in pyproject.toml."""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

MODULES = ["types", "edn", "transit", "msgpack", "shm", "fanout"]

# Checks are globally off only where every index in a module is proven in range; each .pyx states
# its own boundscheck/wraparound choice in its header, these are just the safe defaults.
DIRECTIVES = {
    "language_level": 3,
    "embedsignature": True,
    "cdivision": True,
    "infer_types": True,
}

extra_compile_args = ["-O3"] if os.name != "nt" else []

# CSENTE_ONLY=edn,types builds a subset (handy while iterating on one module).
only = [m for m in os.environ.get("CSENTE_ONLY", "").split(",") if m]

extensions = [
    Extension(f"csente.{name}", [f"python/csente/{name}.pyx"], extra_compile_args=extra_compile_args)
    for name in MODULES
    if (not only or name in only) and os.path.exists(f"python/csente/{name}.pyx")
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES, annotate=False, nthreads=os.cpu_count() or 1),
    options={"build_ext": {"parallel": os.cpu_count() or 1}},
)
