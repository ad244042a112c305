"""Generated protobuf and gRPC modules (``buildcontrol.v1``), made by ``make proto``."""
