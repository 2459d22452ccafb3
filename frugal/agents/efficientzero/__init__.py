"""EfficientZero V1 (Ye et al. 2021) and V2 (Wang et al. 2024): MuZero with a self-supervised
consistency loss, learned in a latent model and acted with batched tree search.

One learner (agent.py), two versions (`version`), each a small policy of its own (v1.py, v2.py):
how it searches, acts, and makes its policy and value targets:
  v1: pUCT search with Dirichlet root noise, actions sampled from the visit distribution with a
      temperature that decays with training; value-prefix LSTM; n-step TD value targets whose
      horizon shrinks with the age of the data (off-policy correction); policy targets from
      re-running the search with the target model on 99% of sampled positions.
  v2: Gumbel search (Gumbel-top-m + sequential halving at the root), acting with the Gumbel
      action; per-step reward head; mixed value targets (search-based value estimation, SVE):
      root values of a fresh search for old data, n-step TD for recent data; improved-policy
      targets; sampled search for Box actions (K candidates per node: the policy mean, draws from
      the policy and from a widened policy, with prior logits log pi - log beta).

Every update: sample positions by priority from the game segments, rebuild their unroll windows,
reanalyse (target-model values for the bootstraps, a batched search over every position of the
unroll for the policy targets and SVE values), then unroll the model K steps with the dynamics
gradient halved at every step and minimise reward (or value-prefix), value and policy
cross-entropies plus the negative cosine between the predicted and the (stop-gradient) observed
next latent's SimSiam projections. Priorities are the value error at the sampled position.
Collection and training never race: the runner runs exactly `replay_ratio` updates per env step,
then `final_update_ratio * steps` in all (EfficientZero's 120k updates for 100k steps).

Deviations from the papers' code, on purpose:
- Acting uses the latest online network (no separate self-play copy refreshed every 100 steps);
  reanalysis and bootstrap values use the target network refreshed every 200 updates, as there.
- Actions enter the dynamics as one-hot planes (V1: one plane a/A; V2: a learned embedding).
- Game ends: a truncated game bootstraps from its true final observation, and positions after a
  truncation are masked; after a terminal, values and rewards are trained towards 0. Unroll
  steps past a game's end replay the stored actions of the next game (the papers: random ones).
- V2's policy mask for positions whose improved-policy argmax differs from the search's chosen
  action is not applied. Sampled search puts the policy mean in slot 0 of the candidates.
- The atari100k (V2) preset keeps the per-step reward head; V2's released Atari config uses the
  value-prefix LSTM (set agent.value_prefix=true for that).

Modules: config (settings, presets, validation), agent (the learner), model (the network as the
search sees it), targets (target functions and reanalysis), prefetch (batches drawn
`agent.prefetch` updates ahead, reanalysed in the learner or on reanalysis workers), v1, v2,
sampled (sampled search for Box actions), losses, augment.
"""

from __future__ import annotations

from frugal.agents.efficientzero.agent import Agent
from frugal.agents.efficientzero.config import PRESETS, Config, default_preset

__all__ = ["PRESETS", "Agent", "Config", "default_preset"]
