"""The generated protobuf and gRPC modules of protos/ (``buildcontrol_proto.v1``), which
the server and the clients both import. Made by ``make proto`` (tools/proto/generate.py)
in a checkout, and by the build hook (setup.py) in a wheel; never edited, never committed."""
