"""RL-style parallel rollouts with evolution strategies (what `make demo` runs).

A linear policy (an 8 x 64 numpy matrix: 64 sensor readings in, 8 actuator
commands out) balances a cart-pole-like linear dynamical system written in
numpy (SpringPendulumEnv below). Every iteration, the driver puts the policy
in the object store once and starts K rollout tasks that all receive it by
reference; each task perturbs the policy with Gaussian noise drawn from its
own seed (antithetic pairs: +noise and -noise), runs one episode, and returns
its total reward and a few trajectory statistics. The driver regenerates each task's noise from the seed and moves
the policy along the reward-weighted noise (Salimans et al., 2017), so only
seeds and rewards travel, never gradients.

At the end the same training run (same seeds, same number of rollouts) is
repeated sequentially in this process, its rewards are checked to be the
same, and both are timed (cluster start excluded) to show the speedup.

Run: .venv/bin/python examples/rollouts.py [--iterations 5] [--rollouts K]
"""

import argparse
import time

import ember as ray
import numpy as np

OBS_DIM = 64
ACT_DIM = 8
LATENT_DIM = 4


class SpringPendulumEnv:
    """A cart-pole-like balance task as a linear dynamical system, in numpy.

    The hidden state is two oscillators (a cart on a spring and a pendulum,
    linearized): z = (x, v, theta, omega). Integrated with explicit Euler they
    slowly gain energy, so without control they swing up and the cost grows.
    The policy sees z only through 64 noisy sensors (o = C z + noise) and acts
    through 8 actuators that a fixed matrix mixes into the 2 forces. The reward
    per step is -(|z|^2 + 0.01 |a|^2); the state is clipped to [-10, 10] (the
    ends of the track). The physics (sensors, mixing) is fixed by a seed
    shared by every process; the episode seed picks the start state, the
    pushes the system gets and the sensor noise.
    """

    DT = 0.05

    def __init__(self, seed, steps):
        physics = np.random.default_rng(12345)
        self.C = physics.standard_normal((OBS_DIM, LATENT_DIM)) / 2  # sensors
        mix = physics.standard_normal((2, ACT_DIM)) / np.sqrt(ACT_DIM)  # actuators
        dt = self.DT
        self.A = np.array([[1.0, dt, 0.0, 0.0],
                           [-dt, 1.0 - 0.02 * dt, 0.0, 0.0],
                           [0.0, 0.0, 1.0, dt],
                           [0.0, 0.0, -2.25 * dt, 1.0 - 0.02 * dt]])
        self.B = np.array([[0.0, 0.0], [dt, 0.0], [0.0, 0.0], [0.0, dt]]) @ mix
        rng = np.random.default_rng(seed)
        self.z = rng.standard_normal(LATENT_DIM)
        self.pushes = 0.05 * rng.standard_normal((steps, LATENT_DIM)) * [0.0, 1.0, 0.0, 1.0]
        self.sensor_noise = 0.05 * rng.standard_normal((steps, OBS_DIM))
        self.t = 0

    def observe(self):
        return self.C @ self.z + self.sensor_noise[self.t]

    def step(self, action):
        z = self.z
        reward = -(z @ z + 0.01 * (action @ action))
        self.z = np.clip(self.A @ z + self.B @ action + self.pushes[self.t], -10.0, 10.0)
        self.t += 1
        return reward


def perturbation(noise_seed):
    """The noise a rollout adds to the policy, regenerated from its seed."""
    return np.random.default_rng(noise_seed).standard_normal((ACT_DIM, OBS_DIM))


def run_episode(policy, seed, steps, noise_seed=None, sign=1.0, sigma=0.05):
    """One episode of policy + sign * sigma * noise(noise_seed) in the env of `seed`.

    Returns (total_reward, stats), stats a dict of trajectory figures.
    """
    if noise_seed is not None:
        policy = policy + sign * sigma * perturbation(noise_seed)
    env = SpringPendulumEnv(seed, steps)
    total = 0.0
    state_norms = np.empty(steps)
    action_norms = np.empty(steps)
    for t in range(steps):
        action = np.tanh(policy @ env.observe())
        total += env.step(action)
        state_norms[t] = np.sqrt(env.z @ env.z)
        action_norms[t] = np.sqrt(action @ action)
    stats = {
        "steps": steps,
        "final_state_norm": float(state_norms[-1]),
        "max_state_norm": float(state_norms.max()),
        "mean_action_norm": float(action_norms.mean()),
    }
    return float(total), stats


# The same function as a task; the driver also calls run_episode directly for
# the sequential comparison.
rollout = ray.remote(run_episode)


def train(iterations, num_rollouts, steps, run_batch, verbose):
    """Evolution strategies; run_batch(policy, jobs) -> [(reward, stats)] runs the episodes."""
    policy = np.zeros((ACT_DIM, OBS_DIM))
    sigma, lr = 0.05, 0.01
    history = []
    for it in range(iterations):
        env_seed = 1000 + it  # common random numbers: same episode for every perturbation
        noise_seeds = [10_000 * (it + 1) + i for i in range(num_rollouts // 2)]
        jobs = [(env_seed, steps, ns, sign, sigma) for ns in noise_seeds for sign in (1.0, -1.0)]
        results = run_batch(policy, jobs)
        rewards = np.array([r for r, _ in results])
        # Centered ranks, as in Salimans et al.: robust to the reward scale.
        ranks = np.empty(len(rewards))
        ranks[rewards.argsort()] = np.arange(len(rewards))
        weights = ranks / (len(rewards) - 1) - 0.5
        grad = np.zeros_like(policy)
        for (_, _, ns, sign, _), w in zip(jobs, weights):
            grad += w * sign * perturbation(ns)
        policy = policy + lr / (len(jobs) * sigma) * grad
        history.append(rewards)
        if verbose:
            stats = [s for _, s in results]
            print(f"iteration {it + 1}/{iterations}: {len(jobs)} rollouts x {steps} steps, "
                  f"mean reward {rewards.mean():12.1f} (best {rewards.max():10.1f}), "
                  f"max |state| {np.mean([s['max_state_norm'] for s in stats]):6.2f}")
    return policy, history


def ember_batch(policy, jobs):
    policy_ref = ray.put(policy)  # stored once, passed by reference to every task
    return ray.get([rollout.remote(policy_ref, *job) for job in jobs])


def local_batch(policy, jobs):
    return [run_episode(policy, *job) for job in jobs]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--rollouts", type=int, default=None,
                        help="rollouts per iteration (default: 2 * CPUs, at least 4; even)")
    parser.add_argument("--steps", type=int, default=5000, help="steps per episode")
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="CPUs of the local cluster (default: all)")
    args = parser.parse_args()

    ray.init(num_cpus=args.num_cpus)
    num_cpus = int(ray.cluster_resources().get("CPU", 1))
    num_rollouts = args.rollouts or max(4, 2 * num_cpus)
    num_rollouts += num_rollouts % 2  # antithetic pairs
    print(f"ember cluster: {num_cpus} CPUs; policy {ACT_DIM}x{OBS_DIM}, "
          f"{num_rollouts} rollouts per iteration, {args.iterations} iterations")

    # Warm up both ways outside the timings (workers started, function shipped).
    ray.get([rollout.remote(np.zeros((ACT_DIM, OBS_DIM)), 0, 10) for _ in range(num_cpus)])
    run_episode(np.zeros((ACT_DIM, OBS_DIM)), 0, 10)
    start = time.perf_counter()
    run_episode(np.zeros((ACT_DIM, OBS_DIM)), 0, args.steps)
    one_episode = time.perf_counter() - start
    print(f"one episode in-process: {one_episode * 1000:.0f} ms")

    start = time.perf_counter()
    policy, history = train(args.iterations, num_rollouts, args.steps, ember_batch, True)
    ember_s = time.perf_counter() - start
    first, last = history[0].mean(), history[-1].mean()
    print(f"mean reward: {first:.1f} -> {last:.1f} "
          f"({'improved' if last > first else 'not improved'}); "
          f"policy norm {np.linalg.norm(policy):.3f}")

    start = time.perf_counter()
    seq_policy, seq_history = train(args.iterations, num_rollouts, args.steps, local_batch,
                                    False)
    sequential_s = time.perf_counter() - start
    # Same seeds, same code: the sequential run must reproduce the rewards.
    assert all(np.allclose(a, b, rtol=1e-9, atol=0) for a, b in zip(history, seq_history))
    assert np.allclose(policy, seq_policy, rtol=1e-9, atol=1e-12)

    total = args.iterations * num_rollouts
    print(f"{total} rollouts: sequential in-process {sequential_s:.2f} s, "
          f"ember {ember_s:.2f} s (same rewards)")
    print(f"speedup: {sequential_s / ember_s:.1f}x on {num_cpus} CPUs")
    ray.shutdown()


if __name__ == "__main__":
    main()
