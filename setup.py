"""Builds the Cython extensions in python/csente/; all metadata lives in pyproject.toml.

The extensions are cythonized when they are built, not when setup.py is read: an sdist carries the .pyx sources
(and the .pxd/.pyi beside them), not generated C, and building it needs Cython (pyproject's build requires).
"""

import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

MODULES = [
    "types",
    "edn_writer",
    "edn_reader",
    "edn",
    "transit_rules",
    "transit_json_writer",
    "transit_msgpack_writer",
    "transit_reader",
    "transit_json_reader",
    "transit_msgpack_reader",
    "transit",
    "msgpack_writer",
    "msgpack_reader",
    "msgpack",
    "shm",
    "fanout",
    "groups",
]

# Checks are globally off only where every index in a module is proven in range; each .pyx states
# its own boundscheck/wraparound choice in its header, these are just the safe defaults.
DIRECTIVES = {
    "language_level": 3,
    "embedsignature": True,
    "cdivision": True,
    "infer_types": True,
}
JOBS = os.cpu_count() or 1

# CSENTE_OPT=0 builds without optimisation, much faster: for smoke tests of the packaging, never for speed.
extra_compile_args = [f"-O{os.environ.get('CSENTE_OPT', '3')}"] if os.name != "nt" else []

# CSENTE_ONLY=edn,types builds a subset (handy while iterating on one module): a name picks that module and
# the ones it is split into (edn: edn, edn_writer, edn_reader), a full name like transit_json_writer just it.
only = [m for m in os.environ.get("CSENTE_ONLY", "").split(",") if m]


def selected(name: str) -> bool:
    return not only or any(name == m or name.startswith(m + "_") for m in only)



class cythonize_then_build_ext(build_ext):
    """Turns the .pyx sources into C right before compiling them, with every CPU on both steps."""

    def finalize_options(self) -> None:
        from Cython.Build import cythonize

        self.distribution.ext_modules = cythonize(
            self.distribution.ext_modules, compiler_directives=DIRECTIVES, annotate=False, nthreads=JOBS
        )
        super().finalize_options()
        if self.parallel is None:
            self.parallel = JOBS


class build_py_with_dashboard(build_py):
    """Ships the Grafana dashboard inside ``sente`` (as ``sente/grafana/sente.json``): ``sente dashboard-snapshot``
    run from a wheel needs it, and grafana/ stays the one copy in the repository."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib, "sente", "grafana", "sente.json")
        self.mkpath(str(target.parent))
        self.copy_file("grafana/dashboards/sente.json", str(target))


setup(
    ext_modules=[
        Extension(f"csente.{name}", [f"python/csente/{name}.pyx"], extra_compile_args=extra_compile_args)
        for name in MODULES
        if selected(name) and os.path.exists(f"python/csente/{name}.pyx")
    ],
    cmdclass={"build_ext": cythonize_then_build_ext, "build_py": build_py_with_dashboard},
)
