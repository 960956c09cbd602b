"""The Reacher's physics in C (src/ddpg/envs/reacher/_physics.c), built where a C compiler is at hand.

It is optional: without a compiler (or the Python headers) `pip install` still succeeds, and the
Reacher runs the same physics in NumPy, with one warning saying so. Everything else about the
package is in pyproject.toml.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """Optimization flags in the dialect of the compiler found (MSVC's, else GCC's and Clang's)."""

    def build_extensions(self):
        flags = ["/O2"] if self.compiler.compiler_type == "msvc" else ["-O3"]
        for extension in self.extensions:
            extension.extra_compile_args = flags
        super().build_extensions()


setup(ext_modules=[Extension("ddpg.envs.reacher._physics", ["src/ddpg/envs/reacher/_physics.c"], optional=True)],
      cmdclass={"build_ext": BuildExt})
