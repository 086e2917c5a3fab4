"""The server's one-pass reader of plain ``instances`` bodies gives exactly the matrix of
the general JSON path, and hands everything else back to it."""

import json
import random

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from serve.fastjson import read_instances


def general_path(raw):
    return np.array(json.loads(raw)["instances"], dtype=np.float64)


def same_bits(a, b):
    assert a.shape == b.shape
    assert_array_equal(a.view(np.int64), b.view(np.int64))   # -0.0 and 0.0 differ here


def random_number(rng):
    """A JSON number in one of many spellings, most within the reader's range."""
    sign = rng.choice(["", "", "-"])
    kind = rng.randrange(6)
    if kind == 0:
        return sign + str(rng.randrange(0, 10 ** rng.randrange(1, 16)))            # integer
    int_part = rng.choice(["0", str(rng.randrange(1, 10 ** rng.randrange(1, 9)))])
    frac = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 12)))
    if kind == 1:
        return f"{sign}{int_part}.{frac}"
    if kind == 2:
        return f"{sign}0.{'0' * rng.randrange(0, 8)}{frac}"                          # small
    if kind == 3:
        exp = rng.randrange(-25, 26)
        e = rng.choice(["e", "E"]) + rng.choice(["", "+"] if exp >= 0 else [""]) + str(exp)
        return f"{sign}{rng.randrange(1, 10)}.{frac[:6]}{e}"
    if kind == 4:
        return repr(rng.gauss(0, 10 ** rng.randrange(-5, 6)))                         # 17 digits
    return rng.choice(["0", "-0", "0.0", "-0.0", "0e5", "-0E-3", "1e22", "1e-22", "1e23",
                       "123456789012345", "1234567890123456", "0.000000000000000000001"])


@pytest.mark.parametrize("seed", range(6))
def test_matches_general_parser_bit_for_bit(seed):
    rng = random.Random(seed)
    n_features = rng.randrange(1, 9)
    rows = [[random_number(rng) for _ in range(n_features)] for _ in range(rng.randrange(1, 300))]
    ws = rng.choice(["", " ", "\n  ", "\t"])
    raw = ("{" + ws + '"instances"' + ws + ":" + ws + "[" + ws
           + ("," + ws).join("[" + ws + ("," + ws).join(r) + ws + "]" for r in rows)
           + ws + "]" + ws + "}" + ws).encode()
    got = read_instances(raw, n_features, 10 ** 6)
    expected = general_path(raw)
    if got is not None:
        same_bits(got, expected)
    # one number per body: each spelling on its own, so a single long number cannot hide
    # the others behind a whole-body fallback
    for row in rows[:40]:
        for token in row:
            one = f'{{"instances": [[{token}]]}}'.encode()
            got = read_instances(one, 1, 10)
            if got is not None:
                same_bits(got, general_path(one))


def test_plain_numbers_take_the_fast_path():
    X = np.round(np.random.default_rng(0).standard_normal((500, 7)), 6)
    X[0, 0], X[0, 1], X[1, 2] = -0.0, 0.0, 12345.0
    raw = json.dumps({"instances": X.tolist()}).encode()
    got = read_instances(raw, 7, 1000)
    assert got is not None
    same_bits(got, X)
    ints = b'{"instances":[[1,-2,30],[0,-0,7]]}'
    same_bits(read_instances(ints, 3, 10), np.array([[1.0, -2, 30], [0, 0, 7]]))


@pytest.mark.parametrize("raw", [
    b'{"instances": [[1, 2]], "parameters": {}}',      # another key
    b'{"parameters": {}, "instances": [[1, 2]]}',
    b'{"instances": [{"a": 1, "b": 2}]}',              # objects as rows
    b'{"instances": [[1, 2, 3]]}',                     # wrong length
    b'{"instances": [[1]]}',
    b'{"instances": [[1, true]]}',
    b'{"instances": [[1, null]]}',
    b'{"instances": [[1, NaN]]}',
    b'{"instances": [[1, Infinity]]}',
    b'{"instances": [[1, "2"]]}',
    b'{"instances": [[1, 2]]',                         # truncated
    b'{"instances": [[1, 2]]} x',                      # trailing bytes
    b'{"instances": [[1, 2],]}',                       # trailing comma
    b'{"instances": [[01, 2]]}',                       # invalid numbers
    b'{"instances": [[1., 2]]}',
    b'{"instances": [[.5, 2]]}',
    b'{"instances": [[+1, 2]]}',
    b'{"instances": [[1e, 2]]}',
    b'{"instances": [[1, 2.0e400]]}',                  # out of range: general path
    b'{"instances": [[1, 0.12345678901234567]]}',      # 17 digits: general path
    b'{"instances": []}',
    b'{"instances": [[1, 2]\x0c]}',                    # not JSON whitespace
    b'[[1, 2]]',
    b'',
])
def test_anything_else_takes_the_general_path(raw):
    assert read_instances(raw, 2, 100) is None


def test_row_limit_hands_over_to_the_general_path():
    raw = json.dumps({"instances": [[1.5, 2.5]] * 11}).encode()
    assert read_instances(raw, 2, 11).shape == (11, 2)
    assert read_instances(raw, 2, 10) is None      # the general path answers 413
