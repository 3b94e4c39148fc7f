"""A registry of implementations by name: how a seam (source, store, answerer, embedder) is chosen in settings.

After simonw/llm's plugin registries: the library registers its own backends under plain names, and a
user's code (or a future plugin) registers more with the same call; settings name one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from index.errors import UnknownBackendError

T = TypeVar("T")


class Registry(Generic[T]):
    """Factories by name for one seam; ``create(name, ...)`` builds one, an unknown name is a typed error."""

    def __init__(self, seam: str) -> None:
        self.seam = seam
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None):
        """``registry.register("faiss", FaissStore)``, or as a decorator: ``@registry.register("faiss")``."""
        if factory is None:
            def deco(f: Callable[..., T]) -> Callable[..., T]:
                self._factories[name] = f
                return f
            return deco
        self._factories[name] = factory
        return factory

    def unregister(self, name: str) -> None:
        self._factories.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def create(self, name: str, *args, **kwargs) -> T:
        try:
            factory = self._factories[name]
        except KeyError:
            raise UnknownBackendError(self.seam, name, self.names()) from None
        return factory(*args, **kwargs)
