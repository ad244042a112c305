"""Who may do what: bearer tokens (tokens.py), the one server interceptor that checks
them (interceptor.py), the per-pipeline cancel policy, the caller of each RPC
(caller.py), TLS (tls.py) and the audit lines of every refusal (audit.py)."""
