"""One cog per feature: asking (/ask, mentions, DMs), admin (/reindex, /sources), feedback buttons."""
