"""Generate the Python gRPC stubs of protos/ into the package `buildcontrol_proto`.

    python tools/proto/generate.py OUT [--mypy-grpc PLUGIN]

writes OUT/buildcontrol_proto/v1/*_pb2.py, *_pb2_grpc.py and their .pyi. `make proto`
runs it into stubs/ (with mypy-protobuf's typed gRPC stubs); setup.py's build hook runs
it into the wheel. protoc names the modules after the proto package (`buildcontrol.v1`),
so their imports of each other are renamed to `buildcontrol_proto.v1`; the wire names
(`buildcontrol.v1.BuildControl`, the messages) and the descriptors stay as they are."""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE = "buildcontrol_proto"
ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
# `from buildcontrol.v1 import x_pb2` and the module names `buildcontrol.v1.x_pb2`
# (never a wire name: those end in a message or service, not `_pb2`).
_IMPORT = re.compile(r"\bfrom buildcontrol\.v1 import\b")
_MODULE = re.compile(r"\bbuildcontrol\.v1\.(\w+_pb2(?:_grpc)?)\b")


def renamed(text: str) -> str:
    text = _IMPORT.sub(f"from {PACKAGE}.v1 import", text)
    return _MODULE.sub(rf"{PACKAGE}.v1.\1", text)


def generate(out: Path, mypy_grpc: str | None = None, protos: Path = PROTOS) -> Path:
    """The stubs of `protos` into `out`/buildcontrol_proto/v1 (replaced); that directory."""
    from grpc_tools import protoc

    sources = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    if not sources:
        raise SystemExit(f"no .proto files under {protos}")
    include = str(Path(protoc.__file__).parent / "_proto")
    target = out / PACKAGE / "v1"
    with tempfile.TemporaryDirectory() as scratch:
        args = ["grpc_tools.protoc", f"-I{protos}", f"-I{include}"]
        args += [f"--python_out={scratch}", f"--pyi_out={scratch}"]
        args += [f"--grpc_python_out={scratch}"]
        if mypy_grpc is not None:
            args += [f"--plugin=protoc-gen-mypy_grpc={mypy_grpc}", f"--mypy_grpc_out={scratch}"]
        if protoc.main([*args, *sources]) != 0:
            raise SystemExit("protoc failed to generate the gRPC stubs")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for made in sorted((Path(scratch) / "buildcontrol" / "v1").iterdir()):
            (target / made.name).write_text(renamed(made.read_text("utf-8")), "utf-8")
    (target / "__init__.py").touch()
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory that gets buildcontrol_proto/v1")
    parser.add_argument("--mypy-grpc", metavar="PLUGIN", help="protoc-gen-mypy_grpc to run too")
    args = parser.parse_args(argv)
    print(f"generated {generate(args.out, args.mypy_grpc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
