"""Herald application: settings, the `herald` CLI and the Discord client."""
