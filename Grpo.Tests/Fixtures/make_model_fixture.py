"""Builds the reference fixture for Grpo.Tests/Model/PyTorchFixtureTests.cs.

The same decoder as Grpo/Model/Transformer.cs, written in plain PyTorch (a Llama/Qwen2 decoder:
RMSNorm eps 1e-5, rotate_half RoPE with theta 10000, grouped-query causal attention with a key
mask, SwiGLU MLP, untied lm_head, QKV bias as in Qwen2), run on one left-padded batch. It saves, in
model_fixture.safetensors next to this script:

  <hf name>           the initial weights (float32), Hugging Face names
  input_ids           (B, T) token ids as float32
  key_mask            (B, T) 1 for real tokens, 0 for padding
  positions           (B, T) rotary positions (0 at each row's first real token)
  loss_weights        (B, T-1) 1 where both the input and its next-token target are real
  logits              (B, T, V)
  loss                (1,) weighted next-token cross-entropy: sum(w * nll) / sum(w)
  grad.<hf name>      d loss / d weight
  adamw_losses        (10,) the loss after each of 10 torch.optim.AdamW steps (lr 1e-2, betas
                      (0.9, 0.999), eps 1e-8, weight decay 0.1 on tensors of rank >= 2, 0 on the rest)
  __metadata__        {"config": the Hugging Face config.json of the model}

The computation runs in float64 from the float32-rounded weights, so the fixture holds the exact
answer to within float64 rounding and the C# side (float32) is compared with the truth, not with
another float32 rounding. If transformers is installed, the plain model is also checked against
transformers' own Qwen2ForCausalLM on the same weights (printed only).

Run: python3 make_model_fixture.py   (needs torch and safetensors; CPU is enough, takes seconds)
"""
import json
import math
import os

import torch
from safetensors.torch import save_file

torch.manual_seed(1234)
DTYPE = torch.float64

CONFIG = dict(vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64,
              rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
              hidden_act="silu", model_type="qwen2", architectures=["Qwen2ForCausalLM"],
              torch_dtype="float32")
V = CONFIG["vocab_size"]
C = CONFIG["hidden_size"]
L = CONFIG["num_hidden_layers"]
HQ = CONFIG["num_attention_heads"]
HKV = CONFIG["num_key_value_heads"]
F = CONFIG["intermediate_size"]
D = C // HQ
THETA = CONFIG["rope_theta"]
EPS = CONFIG["rms_norm_eps"]


def make_weights():
    """Random weights, larger than a training init so every path carries signal; rounded to float32."""
    w = {}

    def add(name, *shape, std=0.3, mean=0.0):
        w[name] = (mean + std * torch.randn(*shape)).float().to(DTYPE)

    add("model.embed_tokens.weight", V, C, std=1.0)
    for i in range(L):
        p = f"model.layers.{i}."
        add(p + "self_attn.q_proj.weight", HQ * D, C)
        add(p + "self_attn.q_proj.bias", HQ * D, std=0.1)
        add(p + "self_attn.k_proj.weight", HKV * D, C)
        add(p + "self_attn.k_proj.bias", HKV * D, std=0.1)
        add(p + "self_attn.v_proj.weight", HKV * D, C)
        add(p + "self_attn.v_proj.bias", HKV * D, std=0.1)
        add(p + "self_attn.o_proj.weight", C, HQ * D)
        add(p + "mlp.gate_proj.weight", F, C)
        add(p + "mlp.up_proj.weight", F, C)
        add(p + "mlp.down_proj.weight", C, F)
        add(p + "input_layernorm.weight", C, std=0.1, mean=1.0)
        add(p + "post_attention_layernorm.weight", C, std=0.1, mean=1.0)
    add("model.norm.weight", C, std=0.1, mean=1.0)
    add("lm_head.weight", V, C)
    return w


def rms_norm(x, weight):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope(x, positions):
    """x (B, T, H, D), positions (B, T): HF Llama rotary embedding (pairs i and i + D/2)."""
    inv_freq = 1.0 / (THETA ** (torch.arange(0, D, 2, dtype=DTYPE) / D))   # (D/2)
    freqs = positions.to(DTYPE)[..., None] * inv_freq                    # (B, T, D/2)
    emb = torch.cat((freqs, freqs), dim=-1)[:, :, None, :]                # (B, T, 1, D)
    return x * emb.cos() + rotate_half(x) * emb.sin()


def attention(q, k, v, key_mask):
    """q (B, T, HQ, D), k v (B, T, HKV, D), key_mask (B, T) bool -> (B, T, HQ, D).
    Causal, masked; a query with no allowed key outputs zeros (as Grpo's Op.Attention does)."""
    B, T = q.shape[:2]
    group = HQ // HKV
    k = k.repeat_interleave(group, dim=2)                                 # query head h reads kv head h // group
    v = v.repeat_interleave(group, dim=2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))                      # (B, H, T, D)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)                       # (B, H, T, T)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    allowed = causal[None, None] & key_mask[:, None, None, :]            # (B, 1, T, T)
    any_allowed = allowed.any(-1, keepdim=True)
    # Rows with no allowed key get finite scores (then zero probabilities), so no NaN reaches the backward.
    scores = scores.masked_fill(~allowed, float("-inf")).masked_fill(~any_allowed, 0.0)
    probs = torch.softmax(scores, dim=-1) * allowed
    return (probs @ v).transpose(1, 2)                                    # (B, T, H, D)


def forward(w, ids, key_mask, positions):
    B, T = ids.shape
    x = w["model.embed_tokens.weight"][ids]                               # (B, T, C)
    for i in range(L):
        p = f"model.layers.{i}."
        n = rms_norm(x, w[p + "input_layernorm.weight"])
        q = (n @ w[p + "self_attn.q_proj.weight"].T + w[p + "self_attn.q_proj.bias"]).view(B, T, HQ, D)
        k = (n @ w[p + "self_attn.k_proj.weight"].T + w[p + "self_attn.k_proj.bias"]).view(B, T, HKV, D)
        v = (n @ w[p + "self_attn.v_proj.weight"].T + w[p + "self_attn.v_proj.bias"]).view(B, T, HKV, D)
        q, k = rope(q, positions), rope(k, positions)
        a = attention(q, k, v, key_mask).reshape(B, T, C)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T
        n = rms_norm(x, w[p + "post_attention_layernorm.weight"])
        gate = n @ w[p + "mlp.gate_proj.weight"].T
        up = n @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"])
    return x @ w["lm_head.weight"].T                                      # (B, T, V)


def loss_of(logits, ids, loss_weights):
    logp = torch.log_softmax(logits[:, :-1], dim=-1)                      # (B, T-1, V)
    nll = -logp.gather(-1, ids[:, 1:, None])[..., 0]                      # (B, T-1)
    return (nll * loss_weights).sum() / loss_weights.sum()


def check_against_transformers(w, ids, key_mask, positions, logits):
    try:
        import transformers
        from transformers import Qwen2Config, Qwen2ForCausalLM
    except ImportError:
        print("transformers not installed: skipped the cross-check")
        return
    try:
        cfg = Qwen2Config(**{k: v for k, v in CONFIG.items() if k not in ("architectures", "model_type", "torch_dtype")},
                          attn_implementation="eager")
        model = Qwen2ForCausalLM(cfg).to(DTYPE)
        missing, unexpected = model.load_state_dict({k: v.clone() for k, v in w.items()}, strict=False)
        with torch.no_grad():
            hf = model(input_ids=ids, attention_mask=key_mask.long(), position_ids=positions).logits
        real = key_mask                                                   # compare real positions only
        diff = (hf - logits)[real].abs().max().item()
        print(f"transformers {transformers.__version__} Qwen2ForCausalLM vs plain model, real positions: "
              f"max abs diff {diff:.3e} ({'OK' if diff < 1e-8 else 'NOT OK'}); missing {missing}, unexpected {unexpected}")
    except Exception as e:  # the cross-check is information, never a reason to lose the fixture
        print(f"transformers cross-check failed to run: {type(e).__name__}: {e}")


def main():
    weights = make_weights()
    B, T = 2, 8
    ids = torch.randint(0, V, (B, T))
    key_mask = torch.ones(B, T, dtype=torch.bool)
    key_mask[1, :2] = False                                               # row 1 is left-padded by two tokens
    ids[1, :2] = 0
    positions = (key_mask.long().cumsum(-1) - 1).clamp(min=0)             # row 1: 0 0 0 1 2 3 4 5
    loss_weights = (key_mask[:, :-1] & key_mask[:, 1:]).to(DTYPE)

    params = {k: v.clone().requires_grad_(True) for k, v in weights.items()}
    logits = forward(params, ids, key_mask, positions)
    loss = loss_of(logits, ids, loss_weights)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in params.items()}
    print(f"loss {loss.item():.6f}")
    check_against_transformers(weights, ids, key_mask, positions, logits.detach())

    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    adamw_losses = []
    for step in range(10):
        optimizer.zero_grad()
        loss_of(forward(params, ids, key_mask, positions), ids, loss_weights).backward()
        optimizer.step()
        with torch.no_grad():
            adamw_losses.append(loss_of(forward(params, ids, key_mask, positions), ids, loss_weights).item())
    print("adamw losses " + " ".join(f"{x:.6f}" for x in adamw_losses))

    out = {name: value.float().contiguous() for name, value in weights.items()}
    out["input_ids"] = ids.float()
    out["key_mask"] = key_mask.float()
    out["positions"] = positions.float()
    out["loss_weights"] = loss_weights.float()
    out["logits"] = logits.detach().float().contiguous()
    out["loss"] = loss.detach().float().reshape(1)
    for name, g in grads.items():
        out["grad." + name] = g.float().contiguous()
    out["adamw_losses"] = torch.tensor(adamw_losses, dtype=torch.float32)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_fixture.safetensors")
    save_file(out, path, metadata={"config": json.dumps(CONFIG)})
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
