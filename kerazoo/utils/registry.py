"""Registries of models, encoders and presets, with errors that name the bad value and close matches."""

import difflib


class Registry:
    """A name -> entry mapping whose lookups fail with the valid names and the closest ones.

    Args:
        kind: what the entries are ("model", "encoder", ...), used in error messages.
    """

    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def register(self, name, entry):
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name):
        if not isinstance(name, str) or name.lower() not in self._entries:
            raise ValueError(self.unknown_message(name))
        return self._entries[name.lower()]

    def unknown_message(self, name, valid=None):
        valid = sorted(valid if valid is not None else self._entries)
        close = difflib.get_close_matches(str(name).lower(), valid, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {', '.join(valid)}."

    def names(self):
        return sorted(self._entries)

    def items(self):
        return sorted(self._entries.items())

    def __contains__(self, name):
        return name in self._entries
