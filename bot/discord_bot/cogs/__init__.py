"""One cog per feature: asking (/ask, mentions, DMs), admin (/reindex, /sources), news (/add), feedback buttons."""
