"""The Ray paper's first example, run on ember with one changed import.

Two tasks build matrices, a third multiplies them: the third task starts once
its two arguments exist, and receives them as numpy arrays without the driver
ever touching them. Then the same pattern on 1000x1000 matrices (8 MB each),
which travel through the node's shared-memory object store rather than
inline in messages.

Run: .venv/bin/python examples/zeros_dot.py
"""

import time

import ember as ray
import numpy as np


@ray.remote
def zeros(shape):
    return np.zeros(shape)


@ray.remote
def ones(shape):
    return np.ones(shape)


@ray.remote
def dot(a, b):
    return np.dot(a, b)


def main():
    ray.init()

    # The seed example: futures in, futures out.
    id1 = zeros.remote([5, 5])
    id2 = zeros.remote([5, 5])
    id3 = dot.remote(id1, id2)
    result = ray.get(id3)
    print("dot(zeros(5x5), zeros(5x5)) =")
    print(result)
    assert isinstance(result, np.ndarray)
    assert result.shape == (5, 5)
    assert not result.any()

    # A bigger chain: each matrix is 8 MB, so arguments and results go
    # through shared memory. ones(n x n) . ones(n x n) is n everywhere, and
    # multiplying that by ones again gives n * n everywhere.
    n = 1000
    start = time.perf_counter()
    a = ones.remote([n, n])
    b = ones.remote([n, n])
    ab = dot.remote(a, b)  # every entry n
    abc = dot.remote(ab, ones.remote([n, n]))  # every entry n * n
    big = ray.get(abc)
    elapsed = time.perf_counter() - start
    assert big.shape == (n, n)
    assert np.all(big == float(n * n)), big
    print(f"dot(dot(ones, ones), ones) on {n}x{n} float64 matrices "
          f"({big.nbytes / 1e6:.0f} MB each): every entry = {big[0, 0]:.0f} "
          f"(expected {n * n}), {elapsed:.2f} s")

    # A matrix put once by the driver and used by several tasks: stored
    # once, passed by reference.
    m = ray.put(np.full((n, n), 2.0))
    squares = ray.get([dot.remote(m, m) for _ in range(4)])
    assert all(np.all(s == 4.0 * n) for s in squares)
    print(f"4 tasks on one put {n}x{n} matrix: every entry = {squares[0][0, 0]:.0f} "
          f"(expected {4 * n})")

    ray.shutdown()
    print("ok")


if __name__ == "__main__":
    main()
