"""Fakes of the services Herald talks to, each on 127.0.0.1, so the tests run offline against real clients.

* ``fakes.discord``: Discord's REST API and gateway (``FakeDiscord``), for the real discord.py client.
* ``fakes.llm_server``: an OpenAI-compatible chat-completions server (``fake_llm_server``).
* ``fakes.news``: a news website with feeds, sitemaps and misbehaving pages (``fake_news_server``).
* ``fakes.engine``: ``WorkingEngine``, the real engine plus a fixed cost per question (load tests).

Tests import them as ``fakes.*`` (pytest puts ``tests/`` on ``sys.path``); code run from the repository root,
such as the benchmarks, imports ``tests.fakes.*``. Inside the package every import is relative, so both work.
"""
