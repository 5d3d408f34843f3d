"""A parameter server: one actor holds the weights of a linear model, worker
tasks fetch them, compute gradients on their own shard of data and push the
gradients back; the server applies them. The loss falls as training goes.

Run: .venv/bin/python examples/parameter_server.py [--workers 4] [--iterations 20]
"""

import argparse

import ember as ray
import numpy as np

DIM = 50


@ray.remote
class ParameterServer:
    def __init__(self, dim, learning_rate):
        self.weights = np.zeros(dim)
        self.learning_rate = learning_rate
        self.updates = 0

    def get_weights(self):
        return self.weights

    def apply_gradients(self, *gradients):
        self.weights = self.weights - self.learning_rate * np.mean(gradients, axis=0)
        self.updates += 1
        return self.weights

    def num_updates(self):
        return self.updates


def make_data(seed, n=2000):
    """A shard of a regression problem whose true weights are fixed."""
    true_weights = np.random.default_rng(0).normal(size=DIM)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, DIM))
    y = x @ true_weights + rng.normal(scale=0.1, size=n)
    return x, y


@ray.remote
def compute_gradient(weights, shard_seed):
    x, y = make_data(shard_seed)
    error = x @ weights - y
    return x.T @ error / len(y)


def loss(weights, shard_seed=10_000):
    x, y = make_data(shard_seed)
    return float(np.mean((x @ weights - y) ** 2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()

    ray.init()
    server = ParameterServer.remote(DIM, learning_rate=0.2)
    weights = ray.get(server.get_weights.remote())
    first = loss(weights)
    print(f"iteration  0: loss {first:.4f}")
    for i in range(1, args.iterations + 1):
        # Every worker reads the current weights (passed by reference) and pushes a gradient.
        weights_ref = server.get_weights.remote()
        gradients = [compute_gradient.remote(weights_ref, w) for w in range(args.workers)]
        weights = ray.get(server.apply_gradients.remote(*gradients))
        if i % 5 == 0 or i == args.iterations:
            print(f"iteration {i:2d}: loss {loss(weights):.4f}")
    last = loss(weights)
    updates = ray.get(server.num_updates.remote())
    print(f"{updates} updates from {args.workers} workers: loss {first:.3f} -> {last:.4f}")
    assert updates == args.iterations
    assert last < first / 5, "training should reduce the loss"
    ray.shutdown()


if __name__ == "__main__":
    main()
