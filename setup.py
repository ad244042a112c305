"""Build hook: the gRPC stubs (package `buildcontrol.v1`) are generated from protos/ when
a wheel is built, so `pip install .`, `pip install dist/*.whl` and `pipx install .` give
a working `buildcontrol` with no other step. The stubs are never committed; `make proto`
generates the same ones (with mypy-protobuf types) for a development checkout."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTOS = ROOT / "protos"


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable checkout imports the stubs `make proto` wrote
        self._generate(Path(self.build_lib))

    def _generate(self, out: Path) -> None:
        from grpc_tools import protoc  # a build requirement (pyproject.toml)

        sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
        if not sources:
            raise SystemExit(f"no .proto files under {PROTOS}")
        include = str(Path(protoc.__file__).parent / "_proto")
        args = [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *sources,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed to generate the gRPC stubs")
        (out / "buildcontrol" / "v1" / "__init__.py").touch()


setup(cmdclass={"build_py": BuildPyWithStubs})
