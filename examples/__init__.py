"""Small apps that mount better-auth-server with OBOPlugin, one per framework."""
