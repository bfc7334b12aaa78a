"""Redis storage: key builders, repositories, Lua scripts and the event log."""
