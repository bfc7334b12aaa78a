"""Voice sessions (seed 002): HTTP routes, socket events, the chat bot, access and actions."""
