//! Starting and talking to the MCP gateway in end-to-end tests.
