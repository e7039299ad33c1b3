"""DeviceIndex: dense indexes in order of first appearance, restorable from the store."""

import pytest

from adapters.devices import DeviceIndex


def test_assigns_next_index_and_remembers():
    devices = DeviceIndex()
    assert [devices.index(name) for name in ("a", "b", "a", "AA:BB:CC:DD:EE:FF")] == [0, 1, 0, 2]
    assert devices.ids() == ["a", "b", "AA:BB:CC:DD:EE:FF"]
    assert len(devices) == 3 and "b" in devices and "c" not in devices
    assert devices.get("c") is None and len(devices) == 3


def test_restores_from_a_mapping_or_ids():
    devices = DeviceIndex({"b": 1, "a": 0})
    assert devices.ids() == ["a", "b"]
    assert devices.index("c") == 2
    assert DeviceIndex(devices.as_mapping()).ids() == ["a", "b", "c"]
    assert DeviceIndex(["x", "y"]).as_mapping() == {"x": 0, "y": 1}


def test_ids_is_a_copy():
    devices = DeviceIndex(["a"])
    devices.ids().append("b")
    assert devices.ids() == ["a"]


@pytest.mark.parametrize("known", [{"a": 1}, {"a": 0, "b": 0}, {"a": 0, "b": 2}, {"a": -1}, {"a": "0"},
                                   {0: 0}, {"a": True}, ["a", "a"]])
def test_refuses_a_mapping_that_is_not_dense(known):
    with pytest.raises(ValueError, match="device ind"):
        DeviceIndex(known)
