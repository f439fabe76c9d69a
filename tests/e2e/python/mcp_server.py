"""A small MCP server written with the official Python SDK (PyPI `mcp`), for Troupe's MCP
tests. It reports what its process can see (working directory, environment, network
interfaces) so the tests can check the sandbox Troupe starts it in.

Usage: mcp_server.py stdio | mcp_server.py http PORT
With START_DELAY=SECONDS in its environment it waits that long before it serves, like a
server that is slow to start.
"""

import os
import socket
import sys
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("pyskills", instructions="Arithmetic and a look at the sandbox.")


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
def sandbox() -> dict:
    """Describes the process: working directory, environment names, network interfaces."""
    return {
        "cwd": os.getcwd(),
        "env": sorted(os.environ),
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
    }


@server.tool()
def explode() -> str:
    """Always fails."""
    raise ValueError("kaboom")


if __name__ == "__main__":
    time.sleep(float(os.environ.get("START_DELAY", "0")))
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
