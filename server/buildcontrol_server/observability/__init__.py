"""What an operator sees of the server: the gRPC metrics interceptor, structured logs,
the cancel-phase measurements and the gauges computed from the live builds at scrape
time. The metrics themselves are all defined in buildcontrol_server/metrics.py."""
