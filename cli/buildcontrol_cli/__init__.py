"""The `buildcontrol` command, which puts the server's and the clients' commands together."""
