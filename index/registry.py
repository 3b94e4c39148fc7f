"""A registry of implementations by name: how a seam (source, store, answerer, embedder) is chosen in settings.

After simonw/llm's plugin registries: the library registers its own backends under plain names, and a
user's code (or a future plugin) registers more with the same call; settings name one. A registration may
carry traits, facts about the backend known before one is built (a store's file names and loader, a
model's tuned search values), so nothing has to be probed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from index.errors import UnknownBackendError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Factories by name for one seam; ``create(name, ...)`` builds one, an unknown name is a typed error."""

    def __init__(self, seam: str) -> None:
        self.seam = seam
        self._factories: dict[str, Callable[..., T]] = {}
        self._traits: dict[str, dict[str, Any]] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None, **traits: Any) -> Any:
        """``registry.register("faiss", FaissStore)``, or as a decorator: ``@registry.register("faiss")``.

        ``traits``: facts about this backend that callers look up by name (``traits(name)``)."""
        if factory is None:
            def deco(f: F) -> F:
                self.register(name, f, **traits)
                return f
            return deco
        self._factories[name] = factory
        self._traits[name] = dict(traits)
        return factory

    def declare(self, name: str, **traits: Any) -> None:
        """Add traits to ``name`` (registered or not yet: a model known only by name still has traits)."""
        self._traits.setdefault(name, {}).update(traits)

    def unregister(self, name: str) -> None:
        self._factories.pop(name, None)
        self._traits.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def lookup(self, name: str) -> Callable[..., T] | None:
        """The factory registered as ``name``, or None."""
        return self._factories.get(name)

    def factory(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; an unknown name is UnknownBackendError."""
        try:
            return self._factories[name]
        except KeyError:
            raise UnknownBackendError(self.seam, name, self.names()) from None

    def traits(self, name: str) -> dict[str, Any]:
        """What ``name``'s registration declared ({} for a name with none)."""
        return dict(self._traits.get(name, {}))

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.factory(name)(*args, **kwargs)
