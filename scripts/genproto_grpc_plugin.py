#!/usr/bin/env python3
"""protoc plugin that produces grpc_python stubs (`*_pb2_grpc.py`) for `buf generate`.

Why: buf has no `protoc_builtin` for grpc_python, and grpcio-tools ships the generator only inside
its embedded protoc. This plugin reads the CodeGeneratorRequest buf sends on stdin, hands the
request's descriptors to `grpc_tools.protoc --descriptor_set_in ... --grpc_python_out`, and answers
with the files that produced. Used by buf.gen.yaml through scripts/genproto.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc  # type: ignore[import-untyped]  # grpcio-tools ships no type information


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    response = plugin_pb2.CodeGeneratorResponse()
    response.supported_features = plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    with tempfile.TemporaryDirectory(prefix="genproto-grpc-") as tmp:
        descriptors = Path(tmp) / "request.binpb"
        out = Path(tmp) / "out"
        out.mkdir()
        descriptors.write_bytes(descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString())
        args = ["grpc_tools.protoc", f"--descriptor_set_in={descriptors}", f"--grpc_python_out={out}"]
        if request.parameter:
            args[-1] = f"--grpc_python_out={request.parameter}:{out}"
        status = protoc.main([*args, *request.file_to_generate])
        if status != 0:
            response.error = f"grpc_tools.protoc exited with {status}"
            return response
        # Sorted so that the response, and so the output, does not depend on directory order.
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            generated = response.file.add()
            generated.name = path.relative_to(out).as_posix()
            generated.content = path.read_text(encoding="utf-8")
    return response


def main() -> int:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
