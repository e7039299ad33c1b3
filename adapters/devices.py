"""The device registry the adapters see: device id -> the core's int32 device index.

Devices, hubs and BLE meters (named by their address) share one dense index space
0 .. n-1 in order of first appearance; the core's columns (``device``, the binding table)
hold these indexes. An unknown id is not rejected here: it gets the next index, and the
core's binding makes its readings UNBOUND until a patient is bound to it.

The store persists the mapping and restores it at start (``DeviceIndex(mapping)``);
ids assigned since then are ``ids()[n_before:]``. Not thread-safe: one owner (the task
that decodes batches) assigns indexes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MAX_DEVICES = 2**31 - 1  # int32 device column


class DeviceIndex:
    """Device id (str) -> device index (int, 0 .. len - 1), assigning new ids as they appear."""

    __slots__ = ("_index", "_ids")

    def __init__(self, known: Mapping[str, int] | Iterable[str] = ()) -> None:
        """Start from ``known``: a mapping id -> index whose indexes are exactly 0 .. n-1
        (what the store saved), or ids in index order. Raises ValueError otherwise."""
        items = known.items() if isinstance(known, Mapping) else ((name, i) for i, name in enumerate(known))
        self._index: dict[str, int] = {}
        for name, index in items:
            if type(name) is not str or type(index) is not int:
                raise ValueError(f"device index entries are str -> int, not {name!r} -> {index!r}")
            self._index[name] = index
        self._ids: list[str] = sorted(self._index, key=self._index.__getitem__)
        if [self._index[name] for name in self._ids] != list(range(len(self._ids))):
            raise ValueError(f"device indexes must be exactly 0 .. {len(self._ids) - 1}, each once")

    def index(self, device_id: str) -> int:
        """The index of ``device_id``; an unknown id gets the next index and is remembered."""
        found = self._index.get(device_id)
        if found is not None:
            return found
        if len(self._ids) >= MAX_DEVICES:
            raise OverflowError(f"device index full ({MAX_DEVICES} devices): {device_id!r}")
        found = self._index[device_id] = len(self._ids)
        self._ids.append(device_id)
        return found

    def get(self, device_id: str) -> int | None:
        """The index of ``device_id``, or None when it has none (nothing is assigned)."""
        return self._index.get(device_id)

    def id_of(self, index: int) -> str:
        """The id of device index ``index`` (IndexError if none has it)."""
        return self._ids[index]

    def ids(self) -> list[str]:
        """Every id in index order: ``ids()[i]`` is the id of device index i (a copy)."""
        return list(self._ids)

    def as_mapping(self) -> dict[str, int]:
        """id -> index, for the store (a copy; ``DeviceIndex(d.as_mapping())`` equals ``d``)."""
        return dict(self._index)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._index

    def __repr__(self) -> str:
        return f"DeviceIndex({len(self._ids)} devices)"
