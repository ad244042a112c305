"""Step logs on the server: what agents upload, kept in a log store, read and followed
(docs/logs.md)."""
