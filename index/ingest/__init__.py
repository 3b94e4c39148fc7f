"""Documents in: where they come from (``sources``: the source seam; ``corpus``: article files; ``web`` and
``feeds``: articles fetched from the web), near-duplicate detection (``dedup``) and splitting into
sentences and chunks (``chunking``, ``splitter``)."""
