#!/usr/bin/env python3
"""An independent implementation of GRPO's math (DeepSeekMath section 4.1), for checking the C# one.

Plain Python 3, standard library only, float64 throughout, written from the paper's equations and
not from the C# code: the statistics come from Python's `statistics` module, and the loss gradient is
derived by hand, case by case, from

    J = (1/G) sum_i (1/|o_i|) sum_t [ min(rho * A, clip(rho, 1 - eps_lo, 1 + eps_hi) * A) - beta * KL ]   (eq. 3)
    rho = pi / pi_old = exp(logp - logp_old)      so d rho / d logp = rho
    KL = k3 = pi_ref/pi - log(pi_ref/pi) - 1  (eq. 4), or k1 = log(pi/pi_ref), k2 = log(pi/pi_ref)^2 / 2

with the "loss" being -J and the token weights of each aggregation (sequence: 1/(G |o_i|), the
paper; token: 1/sum|o_i|, DAPO; constant: 1/(G * maxTokens), Dr. GRPO).

Usage: python3 grpo_reference.py < cases.json > results.json
cases.json is a JSON list; each case has "kind":
  {"kind": "advantages", "rewards": [...], "groupSize": G, "std": "population"|"sample",
   "scale": "group"|"batch"|"none", "eps": x}                         -> {"advantages": [...]}
  {"kind": "kl", "logp": x, "refLogp": y}                             -> {"k1": .., "k2": .., "k3": ..}
  {"kind": "loss", "case": {the `grpo explain loss` input}}           -> {"loss": L, "gradLogProbs": [[...]]}
The output is the list of results, in order.
"""
import json
import math
import statistics
import sys


def advantages(rewards, group_size, std="population", scale="group", eps=0.0):
    spread = statistics.pstdev if std == "population" else statistics.stdev
    batch_spread = spread(rewards) if scale == "batch" else None
    result = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start:start + group_size]
        centre = statistics.fmean(group)
        if max(group) == min(group):
            # every output scored the same: no output is better than another
            result.extend([0.0] * len(group))
            continue
        if scale == "group":
            denominator = spread(group) + eps
        elif scale == "batch":
            denominator = batch_spread + eps
        else:
            denominator = 1.0
        result.extend([(r - centre) / denominator for r in group])
    return result


def kl_estimates(logp, ref_logp):
    log_ratio = logp - ref_logp          # log(pi / pi_ref)
    ref_over_pi = math.exp(-log_ratio)   # pi_ref / pi
    return {
        "k1": log_ratio,
        "k2": log_ratio * log_ratio / 2.0,
        "k3": ref_over_pi - math.log(ref_over_pi) - 1.0,
    }


def kl_slope(estimator, logp, ref_logp):
    """d KL / d logp for one token."""
    if estimator == "k1":
        return 1.0
    if estimator == "k2":
        return logp - ref_logp
    # k3 = e^(ref - logp) - (ref - logp) - 1  ->  -e^(ref - logp) + 1
    return 1.0 - math.exp(ref_logp - logp)


def surrogate_and_slope(rho, advantage, eps_lo, eps_hi):
    """min(rho A, clip(rho) A) and its derivative in logp (rho' = rho), by the four cases of the clip."""
    if advantage > 0 and rho > 1.0 + eps_hi:
        return (1.0 + eps_hi) * advantage, 0.0      # gained enough: flat
    if advantage < 0 and rho < 1.0 - eps_lo:
        return (1.0 - eps_lo) * advantage, 0.0      # lost enough: flat
    return rho * advantage, rho * advantage         # inside the trust region, or moving back into it


def loss_and_gradient(case):
    logps = case["logProbs"]
    olds = case["oldLogProbs"]
    refs = case.get("refLogProbs")
    advs = case["advantages"]
    eps_lo = case.get("epsilon", 0.2)
    eps_hi = case.get("epsilonHigh", eps_lo)
    beta = case.get("beta", 0.04)
    aggregation = case.get("aggregation", "sequence")
    estimator = case.get("kl", "k3")
    group = len(logps)
    total_tokens = sum(len(o) for o in logps)

    objective = 0.0
    gradients = []
    for i in range(group):
        if aggregation == "sequence":
            weight = 1.0 / (group * len(logps[i])) if logps[i] else 0.0
        elif aggregation == "token":
            weight = 1.0 / total_tokens
        else:
            weight = 1.0 / (group * case["maxTokens"])
        output_gradient = []
        for t in range(len(logps[i])):
            logp = logps[i][t]
            rho = math.exp(logp - olds[i][t])
            surrogate, surrogate_slope = surrogate_and_slope(rho, advs[i], eps_lo, eps_hi)
            kl, slope_of_kl = 0.0, 0.0
            if refs is not None:
                kl = kl_estimates(logp, refs[i][t])[estimator]
                slope_of_kl = kl_slope(estimator, logp, refs[i][t])
            objective += weight * (surrogate - beta * kl)
            # the loss is -J, so its gradient is -dJ/dlogp
            output_gradient.append(-weight * (surrogate_slope - beta * slope_of_kl))
        gradients.append(output_gradient)
    return {"loss": -objective, "gradLogProbs": gradients}


def run(case):
    kind = case["kind"]
    if kind == "advantages":
        return {"advantages": advantages(case["rewards"], case["groupSize"], case.get("std", "population"),
                                         case.get("scale", "group"), case.get("eps", 0.0))}
    if kind == "kl":
        return kl_estimates(case["logp"], case["refLogp"])
    if kind == "loss":
        return loss_and_gradient(case["case"])
    raise ValueError("unknown kind " + repr(kind))


if __name__ == "__main__":
    json.dump([run(case) for case in json.load(sys.stdin)], sys.stdout)
    sys.stdout.write("\n")
