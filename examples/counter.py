"""The seed's stateful actor: a Counter whose three inc calls return [1, 2, 3].

Run: .venv/bin/python examples/counter.py
"""

import ember as ray


@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def inc(self):
        self.value += 1
        return self.value


def main():
    ray.init()
    counter = Counter.remote()
    values = ray.get([counter.inc.remote() for _ in range(3)])
    print(values)
    assert values == [1, 2, 3]
    ray.shutdown()


if __name__ == "__main__":
    main()
