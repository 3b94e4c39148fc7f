"""Herald on Discord (after discord.py's ``advanced_startup.py`` and RoboDanny).

- ``client``: ``HeraldBot``, given its settings, Engine and feedback log; loads one cog per feature and
  handles every error in one place.
- ``launcher``: ``run_bot`` (what ``herald bot`` runs), ``serve``, logging and signals.
- ``tasks``: the background work the bot owns: its fetch pool, the index rebuilds, the feed watcher.
- ``cogs/``: one extension per feature: asking (/ask, mentions, DMs), admin (/reindex, /sources),
  news (/add), feedback buttons.
- ``util`` (small Discord helpers), ``streaming`` (a model's answer shown as it is written),
  ``conversation`` (follow-ups), ``feedback`` (the votes' log): leaves the cogs and the client share.

Nothing is imported here, so importing one module does not load the others.
"""
