#!/usr/bin/env bash
# The GPU check (issue 19): one script, under 8 minutes on a CUDA machine.
#
#   benchmarks/gpu_check.sh             # on a machine with a CUDA GPU
#   benchmarks/gpu_check.sh --dry-run   # the same steps at toy sizes on the CPU (checks the script)
#
# 1. CUDA against CPU: one update of every agent (DQN, PPO, DreamerV3, EfficientZero) from the
#    same weights and the same replay, in fp32 on both devices; the losses must agree within 1%
#    (cuDNN and the CPU sum in different orders, nothing more).
# 2. Throughput on the GPU at agent.precision=auto (bf16 autocast where the GPU has it):
#    EfficientZero atari100k updates/s (batch 256) and acting env steps/s, DreamerV3 size S
#    updates/s, DQN Atari updates/s, PPO Atari (Breakout, 8 envs) env steps/s.
# 3. One table, also written to $OUT/gpu_check.txt when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
if [[ $DRY == 0 ]] && ! $PY -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check: no CUDA device here; run with --dry-run to check the script on the CPU" >&2
  exit 2
fi
DEVICE=cuda; [[ $DRY == 1 ]] && DEVICE=cpu
TABLE=$(mktemp); trap 'rm -f "$TABLE"' EXIT
row() { printf '%-58s %s\n' "$1" "$2" | tee -a "$TABLE"; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

echo "== 1. CUDA against CPU, one update per agent (fp32)"
DRY=$DRY $PY - <<'EOF' | tee -a "$TABLE"
import copy, os, sys
import numpy as np, torch
sys.path.insert(0, "tests")
from test_precision import GRID, fill  # random transitions with terminals and truncations
from frugal.agents import agent_module
from frugal.config import apply

dry = os.environ["DRY"] == "1"
other = torch.device("cpu" if dry else "cuda")  # the dry run compares the CPU with itself
CASES = {  # algo: (preset, settings, module, loss metric)
    "dqn": ("minatar", dict(batch_size=64, learning_starts=0), "q", "train/loss"),
    "dreamerv3": ("minatar", dict(size="tiny", batch_size=4, batch_length=16, learning_starts=0),
                  "wm", "train/model_loss"),
    "efficientzero": ("minatar", dict(batch_size=64, num_simulations=4, learning_starts=0,
                                      lr_warmup_updates=0), "net", "train/loss"),
}
for algo, (preset, settings, module, metric) in CASES.items():
    package = agent_module(algo)
    losses = {}
    for device in (torch.device("cpu"), other):
        cfg = package.Config()
        apply(cfg, "agent", {**package.PRESETS[preset].agent, **settings, "precision": "fp32"})
        torch.manual_seed(0)
        agent = package.Agent(cfg, GRID, 1, device, seed=3)
        fill(agent, GRID, 80, n=1)
        losses[device.type] = agent.update()[metric]
    a, b = losses["cpu"], losses[other.type]
    ok = abs(a - b) <= 0.01 * max(abs(a), 1e-6)
    print(f"{algo + ' update loss cpu / ' + other.type:<58} {a:.5f} / {b:.5f} "
          f"{'ok' if ok else 'MISMATCH'}")
    if not ok:
        sys.exit(1)
EOF
# PPO: the same rollout and update on both devices (its test builds the rollout by acting)
DRY=$DRY $PY - <<'EOF' | tee -a "$TABLE"
import os, sys
import numpy as np, torch
from frugal.agents import ppo
from frugal.agents.base import Transition
from frugal.envs.base import EnvSpec
other = torch.device("cpu" if os.environ["DRY"] == "1" else "cuda")
spec = EnvSpec((4, 84, 84), np.dtype(np.uint8), True, 4, (1, 84, 84), True, 4, obs_high=255.0)
losses = []
for device in (torch.device("cpu"), other):
    cfg = ppo.Config(**{**ppo.PRESETS["atari"].agent, "num_steps": 8, "precision": "fp32"})
    agent = ppo.Agent(cfg, spec, 2, device, seed=1)
    rng, data = np.random.default_rng(0), np.random.default_rng(1)
    obs = data.integers(0, 256, (2, 4, 84, 84), dtype=np.uint8)
    for _ in range(8):
        action, _ = agent.act(obs, None, np.zeros(2, bool), explore=True, rng=rng)
        nxt = data.integers(0, 256, (2, 4, 84, 84), dtype=np.uint8)
        no = np.zeros(2, bool)
        agent.observe(Transition(obs, action, np.ones(2, np.float32), no, no, no, nxt, nxt))
        obs = nxt
    losses.append(agent.update()["train/v_loss"])
a, b = losses
ok = abs(a - b) <= 0.01 * max(abs(a), 1e-6)
print(f"{'ppo update value loss cpu / ' + other.type:<58} {a:.5f} / {b:.5f} "
      f"{'ok' if ok else 'MISMATCH'}")
sys.exit(0 if ok else 1)
EOF

echo "== 2. Throughput on $DEVICE (agent.precision=auto)"
if [[ $DRY == 1 ]]; then
  EZ=(--env minatar/breakout --preset minatar --batch 16 --act-steps 5 --updates 1
      agent.num_simulations=2)
  DREAMER=(--obs minatar --size tiny --batch-size 2 --batch-length 8 --updates 1 --warmup 1)
  DQN=(--updates 2 --rounds 1 --variants fp32)
else
  EZ=(--env atari/Breakout --preset atari100k --batch 256 --act-steps 100 --updates 5)
  DREAMER=(--obs atari --size S --updates 10 --warmup 2)
  DQN=(--updates 200 --rounds 1 --variants fp32,bf16)
fi
EZ_OUT=$($PY benchmarks/efficientzero_speed.py --device "$DEVICE" "${EZ[@]}" agent.precision=auto)
echo "$EZ_OUT"
row "efficientzero acting env steps/s" "$(grep 'acting: env steps/s' <<<"$EZ_OUT" | awk '{print $NF}')"
row "efficientzero updates/s" "$(grep 'training: updates/s' <<<"$EZ_OUT" | awk '{print $NF}')"
DR_OUT=$($PY benchmarks/dreamer_speed.py --device "$DEVICE" --precision auto "${DREAMER[@]}")
echo "$DR_OUT"
row "dreamerv3 updates/s (wall)" "$(grep 'wall:' <<<"$DR_OUT" | awk '{print $2}')"
DQN_OUT=$($PY benchmarks/dqn_update_speed.py --device "$DEVICE" "${DQN[@]}")
echo "$DQN_OUT"
row "dqn Atari updates/s (batch 32, best variant)" \
  "$(grep -E '^(fp32|bf16) ' <<<"$DQN_OUT" | awk '{print $(NF-1)}' | sort -g | tail -1)"
if [[ $DRY == 1 ]]; then
  row "ppo Atari env steps/s" "(skipped in a dry run)"
else
  PPO_OUT=$($PY benchmarks/ppo_vs_sb3.py --part atari --reps 1 --rollouts 3 --frugal-only \
    --device "$DEVICE")
  echo "$PPO_OUT"
  row "ppo Atari Breakout env steps/s (8 envs)" \
    "$(grep -i 'frugal' <<<"$PPO_OUT" | grep -o '[0-9.]* env steps/s' | head -1)"
fi

echo "== table"
$PY -c "import sys; sys.path.insert(0, 'benchmarks'); from machine import describe; print(describe())"
cat "$TABLE"
if [[ -n "${OUT:-}" ]]; then cp "$TABLE" "$OUT/gpu_check.txt"; fi
