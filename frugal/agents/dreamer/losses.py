"""DreamerV3's two losses, in the paper's order (Hafner et al. 2023, section 2 and 3).

World model learning, on a batch of replayed sequences:
    L = 1.0 (decoder + reward + continue) + 0.5 max(1, KL[sg(post) || prior])
                                          + 0.1 max(1, KL[post || sg(prior)]).
Actor-critic learning, on trajectories imagined from the posterior states of that batch: the
critic (twohot, regularised towards its slow EMA copy) learns λ-returns; the actor maximises
returns scaled by max(1, S), S the EMA of their 95th - 5th percentile range, plus an entropy
bonus: REINFORCE for discrete actions, gradients through the dynamics for continuous ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from frugal.nets.distributions import (
    categorical_entropy,
    categorical_kl,
    free_bits,
    symlog,
    twohot,
    twohot_loss,
    twohot_mean,
)
from frugal.nets.returns import lambda_returns

if TYPE_CHECKING:
    from frugal.agents.dreamer.agent import Agent

Metrics = dict[str, torch.Tensor]


def world_model_loss(agent: Agent, batch: dict[str, torch.Tensor]):
    """Losses of one batch of sequences [T, B, ...]; returns (loss, posterior features
    [T, B, F] and the final state for the next batch, metrics)."""
    cfg, wm = agent.cfg, agent.wm
    obs = batch["obs"]
    steps, size = obs.shape[:2]
    with agent.autocast():  # the conv (or MLP) encoder over every frame
        embed = wm.encoder(obs.flatten(0, 1)).float().unflatten(0, (steps, size))
    noise = torch.rand((steps, size, cfg.stoch), generator=agent.gen, device=agent.device)
    stoch, deter, post = agent.observe_sequence(
        embed, batch["action"], batch["first"], agent.carry_stoch, agent.carry_deter, noise
    )
    feat = torch.cat([deter, stoch], -1)
    with agent.autocast():
        prior = wm.rssm.prior_logits(deter)
    dyn = free_bits(categorical_kl(post.detach(), prior).sum(-1), cfg.free_nats)
    rep = free_bits(categorical_kl(post, prior.detach()).sum(-1), cfg.free_nats)
    flat = feat.flatten(0, 1)
    with agent.autocast():  # the decoder and the heads, over every step
        recon = wm.decoder(flat).float().unflatten(0, (steps, size))
        reward_logits, cont_logits = wm.reward(feat).float(), wm.cont(feat).float().squeeze(-1)
    if wm.kind == "mlp":
        target = symlog(obs.float())
    else:
        target = obs.float() / agent.spec.obs_high
    dec = (recon - target).square().flatten(2).sum(-1)
    rew = twohot_loss(reward_logits, batch["reward"], agent.buckets)
    cont_target = 1.0 - batch["terminal"].float()
    con = F.binary_cross_entropy_with_logits(cont_logits, cont_target, reduction="none")
    loss = (dec + rew + con + cfg.dyn_scale * dyn + cfg.rep_scale * rep).mean()
    metrics = {
        "train/model_loss": loss,
        "train/decoder_loss": dec.mean(),
        "train/reward_loss": rew.mean(),
        "train/cont_loss": con.mean(),
        "train/dyn_loss": dyn.mean(),
        "train/rep_loss": rep.mean(),
        "train/post_entropy": categorical_entropy(post).sum(-1).mean(),
    }
    return loss, feat, (stoch[-1], deter[-1]), metrics


def imagine(agent: Agent, stoch: torch.Tensor, deter: torch.Tensor):
    """Roll the actor out in the model for imag_horizon steps from start states [N, ...].
    Returns features [H+1, N, F] and actions [H, N, A]. With gradients enabled (backprop),
    they flow from the features to the actor through the actions and the dynamics."""
    cfg, actor, n, dev = agent.cfg, agent.actor, stoch.shape[0], agent.device
    u = torch.rand((cfg.imag_horizon, n, cfg.stoch), generator=agent.gen, device=dev)
    if not torch.is_grad_enabled():  # fill preallocated buffers
        d = deter.shape[1]
        feats = torch.empty(cfg.imag_horizon + 1, n, d + stoch.shape[1], device=dev)
        actions = torch.empty(cfg.imag_horizon, n, agent.action_dim, device=dev)
        feats[0, :, :d], feats[0, :, d:] = deter, stoch
        for h in range(cfg.imag_horizon):
            actions[h] = actor.sample(actor(feats[h]), agent.gen)
            stoch, deter = agent.img_step(stoch, deter, actions[h], u[h])
            feats[h + 1, :, :d], feats[h + 1, :, d:] = deter, stoch
        return feats, actions
    feat_list, action_list = [torch.cat([deter, stoch], -1)], []
    for h in range(cfg.imag_horizon):
        action = actor.sample(actor(feat_list[-1].detach()), agent.gen)
        stoch, deter = agent.img_step(stoch, deter, action, u[h])
        feat_list.append(torch.cat([deter, stoch], -1))
        action_list.append(action)
    return torch.stack(feat_list), torch.stack(action_list)


def behaviour_losses(agent: Agent, feat: torch.Tensor, terminal: torch.Tensor):
    """Actor and critic losses on trajectories imagined from every posterior state (or from
    `imag_starts` of them drawn at random, a CPU saving); returns (actor loss, critic loss,
    metrics)."""
    cfg, wm, buckets = agent.cfg, agent.wm, agent.buckets
    start = feat.detach().flatten(0, 1)
    terminal = terminal.flatten()
    if 0 < cfg.imag_starts < len(start):
        pick = torch.randperm(len(start), generator=agent.gen, device=agent.device)
        pick = pick[: cfg.imag_starts]
        start, terminal = start[pick], terminal[pick]
    deter, stoch = start.split([agent.sizes.deter, agent.sizes.latent], -1)
    # network passes under agent.autocast(), their outputs back to fp32 before any loss; the
    # recurrent state stays fp32 (the GRU's update mixes the fp32 state back in)
    with torch.set_grad_enabled(agent.backprop):
        with agent.autocast():
            feats, actions = imagine(agent, stoch, deter)
            reward_logits = wm.reward(feats[1:]).float()
        rewards = twohot_mean(reward_logits, buckets)
    with agent.autocast():
        if agent.backprop:  # values carry gradients to the actor; the critic's loss does not
            value_logits = agent.critic(feats).float()
            critic_logits = agent.critic(feats[:-1].detach()).float()
        else:  # one critic pass serves both
            critic_logits = agent.critic(feats.detach()).float()
            value_logits = critic_logits.detach()
            critic_logits = critic_logits[:-1]
        with torch.no_grad():
            cont_logits = wm.cont(feats[1:].detach()).float().squeeze(-1)
            slow_logits = agent.slow_critic(feats[:-1].detach()).float()
    values = twohot_mean(value_logits, buckets)
    with torch.no_grad():
        cont = (cont_logits > 0).float()
        cont = torch.cat([1.0 - terminal[None].float(), cont])
        weight = torch.cumprod(cfg.discount * cont, 0) / cfg.discount
        slow = twohot_mean(slow_logits, buckets)
    returns = lambda_returns(rewards, values, cfg.discount * cont[1:], cfg.return_lambda)
    scale = agent.retnorm.update(returns)
    advantage = (returns - values[:-1]) / scale
    with agent.autocast():
        dist = agent.actor(feats[:-1].detach())
    entropy = agent.actor.entropy(dist)
    if agent.backprop:
        objective = advantage
    else:
        objective = agent.actor.log_prob(dist, actions.detach()) * advantage.detach()
    actor_loss = -((objective + cfg.actor_entropy * entropy) * weight[:-1]).mean()

    # cross-entropy to the λ-return plus slow_reg times cross-entropy to the slow critic
    targets = twohot(symlog(returns.detach()), buckets)
    targets = targets + cfg.slow_reg * twohot(symlog(slow), buckets)
    critic_loss = -(targets * critic_logits.log_softmax(-1)).sum(-1)
    critic_loss = (critic_loss * weight[:-1]).mean()
    metrics = {
        "train/actor_loss": actor_loss.detach(),
        "train/critic_loss": critic_loss.detach(),
        "train/actor_entropy": entropy.detach().mean(),
        "train/imag_return": returns.detach().mean(),
        "train/imag_reward": rewards.detach().mean(),
        "train/return_scale": scale,
    }
    return actor_loss, critic_loss, metrics
