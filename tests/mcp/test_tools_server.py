"""The MCP server object itself, without the service: its tools and its manners."""

from __future__ import annotations

import logging

from serve.mcp_tools import build_mcp_server


def test_building_the_server_leaves_the_root_logger_as_it_was() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    # as in a process whose logging nobody configured: the SDK would configure it
    root.handlers.clear()
    root.setLevel(logging.ERROR)
    try:
        build_mcp_server()
        assert root.handlers == []
        assert root.level == logging.ERROR
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


async def test_every_tool_takes_a_described_argument_schema() -> None:
    tools = await build_mcp_server().list_tools()
    assert len(tools) == 13
    for tool in tools:
        schema = tool.input_schema
        assert schema["type"] == "object"
        # the context the SDK injects is not an argument the agent sees
        assert "ctx" not in schema["properties"], tool.name
        for name, field in schema["properties"].items():
            assert field.get("description"), f"{tool.name}.{name}"
