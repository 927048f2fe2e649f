"""The judge/runner message format: values come back as they were sent, whatever their shape."""

import numpy as np
import pytest

from twingrad.verify import wire


def _round_trip(value):
    encoder = wire.Encoder()
    header = {"value": encoder.encode(value)}
    message = wire.pack(header, encoder.arrays)
    length = wire.parse_prefix(message[:wire.PREFIX_SIZE])
    decoded, arrays = wire.unpack(message[wire.PREFIX_SIZE:wire.PREFIX_SIZE + length])
    return wire.decode(decoded["value"], arrays)


@pytest.mark.parametrize("value", [
    np.float32(2.5), np.int64(7), np.asarray(3.25), np.asarray(1.5, dtype=np.float32),
    np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4).T, np.zeros((0, 3)), np.ones((1, 1, 2), np.float32),
])
def test_an_array_or_scalar_comes_back_with_its_shape_dtype_and_type(value):
    got = _round_trip(value)
    assert type(got) is type(value) and np.shape(got) == np.shape(value) and got.dtype == value.dtype
    assert np.array_equal(got, value)


def test_a_float32_loss_is_a_scalar_not_an_array_of_one():
    # np.ascontiguousarray turns a 0-d array into shape (1,): a correct float32 loss was an 'error'.
    loss, dx = _round_trip((np.float32(0.75), np.ones((2, 3), np.float32)))
    assert np.shape(loss) == () and dx.shape == (2, 3)


def test_a_float64_scalar_travels_as_a_json_float_of_the_same_value():
    got = _round_trip(np.float64(-0.1))
    assert isinstance(got, float) and got == -0.1


@pytest.mark.parametrize("value, expected", [(2**70, float(2**70)), (-(10**400), -np.inf), (10**400, np.inf)])
def test_an_integer_too_large_for_json_travels_as_a_float(value, expected):
    assert _round_trip(value) == expected


def test_an_int_subclass_stays_behind_and_a_huge_json_integer_is_refused():
    class Sly(int):
        def __abs__(self):
            return 0  # would pass the size test, then overflow the judge's float()

    kept = wire.Encoder(lambda value, path: {"$o": type(value).__name__, "r": list(path)}).encode(Sly(10**400))
    assert kept["$o"] == "Sly"
    with pytest.raises(wire.Malformed, match="out of range"):
        wire.decode(10**400, [])
