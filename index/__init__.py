"""Herald's retrieval library: corpus -> chunks -> vectors -> FAISS store -> answers.

It never imports ``discord`` or ``bot``: the bot and the CLI are thin layers on top.
"""

from index.errors import HeraldError

__all__ = ["HeraldError"]
