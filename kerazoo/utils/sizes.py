"""Checking a (height, width) pair: one rule and one message for image sizes, input sizes and pool sizes."""

import numbers


def height_width(value, name="size", *, square_from_int=False):
    """`value` as a (height, width) tuple of positive Python ints.

    Args:
        value: a pair of positive ints (NumPy ints too); with `square_from_int`, one int for a square.
        name: what the value is, for the error message (e.g. "image_size").
        square_from_int: accept one int `n` as `(n, n)`.

    Raises:
        ValueError: naming `name`, the value received and what would be valid.
    """
    if square_from_int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in pair):
        wanted = "a positive int or a (height, width) pair of positive ints" if square_from_int else \
            "(height, width), two positive ints"
        raise ValueError(f"{name} must be {wanted}; got {value!r}")
    return int(pair[0]), int(pair[1])
