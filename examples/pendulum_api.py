"""ddpg from Python: train Pendulum for a few episodes, load the trained policy, act with it, evaluate
it, and export it for other programs. Runs as it is (about a minute on a laptop CPU):

    python examples/pendulum_api.py [RUN_DIR]      (default: a new folder under runs/)
"""

import sys

import numpy as np

import ddpg

run = ddpg.train("configs/pendulum.toml", overrides={"agent.warmup_steps": 1000, "train.tensorboard": False},
                 episodes=20, seed=1, run_dir=sys.argv[1] if len(sys.argv) > 1 else None, progress=False)
print(f"trained {run.episodes} episodes; last score {run.scores[-1]:.1f}; files in {run.path}")

policy = ddpg.Policy.load(run.path)  # or run.policy; a checkpoint or a policy.pt works too
action = policy.act(np.array([1.0, 0.0, 0.0], np.float32))  # one observation: cos, sin, angular speed
print(f"{policy}; upright and still, it pushes with {action[0]:+.2f}")

scores = ddpg.evaluate(policy, "Pendulum-v1", episodes=3)  # episodes x environments
print(f"evaluation: {scores.mean():.1f} over {scores.size} episodes (random play scores about -1200)")

path = policy.export(run.path / "pendulum.onnx", "onnx")  # or "pt2"; ONNX needs pip install 'ddpg[export]'
print(f"exported to {path}")
