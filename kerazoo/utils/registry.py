"""The one registry class: models, encoders, presets, data sets, tasks and export formats are each a `Registry`,
whose lookups fail with the same error naming the bad value, the closest names and the valid ones."""

import difflib


class UnknownNameError(KeyError, ValueError):
    """A name that is not registered. A ValueError for callers (a bad argument value), and a KeyError so that
    `registry[name]` behaves as a mapping's lookup does."""

    def __str__(self):
        return self.args[0]


_REQUIRED = object()


class Registry:
    """A name -> entry mapping whose lookups fail with the valid names and the closest ones.

    Iterating gives the names in the order they were registered (a registry's first entries may be its
    defaults); `names()` and `items()` are sorted, for listings.

    Args:
        kind: what the entries are ("model", "encoder", "data set", ...), used in error messages.
    """

    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def register(self, name, entry):
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name, default=_REQUIRED):
        """The entry of `name` (any case); for an unknown name, `default` when given, else an `UnknownNameError`
        naming the valid names."""
        if not isinstance(name, str) or name.lower() not in self._entries:
            if default is not _REQUIRED:
                return default
            raise UnknownNameError(self.unknown_message(name))
        return self._entries[name.lower()]

    def __getitem__(self, name):
        return self.get(name)

    def __setitem__(self, name, entry):
        """Replaces (or adds) an entry: for tests that swap one in (`monkeypatch.setitem`)."""
        self._entries[name] = entry

    def __delitem__(self, name):
        del self._entries[name]

    def unknown_message(self, name, valid=None):
        valid = sorted(valid if valid is not None else self._entries)
        close = difflib.get_close_matches(str(name).lower(), valid, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        plural = self.kind + ("es" if self.kind.endswith("s") else "s")
        return f"Unknown {self.kind} {name!r}.{hint} Valid {plural}: {', '.join(valid)}."

    def names(self):
        return sorted(self._entries)

    def items(self):
        return sorted(self._entries.items())

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)
