"""Build hook: the gRPC stubs (package `buildcontrol_proto.v1`) are generated from protos/
when a wheel is built, so `pip install .`, `pip install dist/*.whl` and `pipx install .`
give a working `buildcontrol` with no other step. The stubs are never committed; `make
proto` generates the same ones (with mypy-protobuf types) for a development checkout,
with the same generator (tools/proto/generate.py, shipped in the sdist)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable checkout imports the stubs `make proto` wrote
        self._generate(Path(self.build_lib))

    def _generate(self, out: Path) -> None:
        spec = importlib.util.spec_from_file_location(
            "buildcontrol_generate_stubs", ROOT / "tools" / "proto" / "generate.py"
        )
        if spec is None or spec.loader is None:
            raise SystemExit("tools/proto/generate.py is missing")
        generator = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generator)
        generator.generate(out, protos=ROOT / "protos")


setup(cmdclass={"build_py": BuildPyWithStubs})
