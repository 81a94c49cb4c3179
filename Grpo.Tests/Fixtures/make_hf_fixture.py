"""Builds the Hugging Face fixtures for Grpo.Tests/Model/HfCheckpointTests.cs, and checks that
folders saved by our C# code load in transformers with the same logits.

Two tiny random models, each in a folder under hf/<name>/ with config.json, model.safetensors,
tokenizer.json, tokenizer_config.json (and whatever else save_pretrained writes) and expected.json:

  llama   LlamaForCausalLM, tied embeddings (no lm_head.weight), 4 query heads over 2 kv heads,
          float32 weights; a GPT-2-style byte-level BPE (ByteLevel pre-tokenizer with its own
          regex) whose post-processor puts <|begin_of_text|> first, as Llama 3's does.
  llama-sharded  the same weights saved with max_shard_size 60KB: model.safetensors.index.json + shards
  qwen2   Qwen2ForCausalLM, QKV bias, 4 query heads over 1 kv head, untied lm_head, rope_theta 1e6,
          weights stored as bfloat16; a Qwen2-style byte-level BPE (NFC, Split on Qwen2's regex,
          then ByteLevel without regex), chat special tokens and one non-special added token.

Both tokenizers are trained with the `tokenizers` library on GSM8K questions (a jsonl path, by
default hf/questions.jsonl beside this script, 50 questions copied from GSM8K's train.jsonl so the
script runs where the data set is not). Every weight, the norms and biases too, is drawn at random
(std 0.1 for matrices) so that no path is hidden by a weight of 1 or 0, and logits are spread
enough that greedy choices are not near ties.

expected.json holds:
  texts          [{text, ids (add_special_tokens=False), ids_with_special (True), decoded}]
  greedy         [{prompt_ids, tokens, log_probs, margins}] 8 greedy steps, each token's log-prob
                 under the model and the gap between its logit and the runner-up's
  logits_prompt  token ids, and logits (T, V) of one forward pass over them
The references are computed in float64 by the model transformers loads from the saved folder (in
float32, then widened); the greedy tokens are also checked against model.generate in float32 (printed).

--ours DIR...  for each folder (written by our C# code: config.json, model.safetensors and
our_logits.json {tokens, logits}), loads it with AutoModelForCausalLM and prints the largest
absolute and relative difference between transformers' logits (float64) and ours; writes
transformers_logits.json beside --out.

Run: python3 make_hf_fixture.py --out hf [--data questions.jsonl] [--ours DIR ...]
     (torch, transformers 5, tokenizers, safetensors; CPU is enough)
"""
import argparse
import json
import os

import torch
from safetensors import safe_open
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

TEXTS = [
    "Natalia sold clips to 48 of her friends in April.",
    "Weng earns $12 an hour; yesterday she did 50 minutes.  How much?\n\nAnswer: 10",
    "It's 3.5 km — naïve café, 日本語 and 🙂 too!",
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n<think>",
    "<|begin_of_text|>Betty has 100 dollars.<|end_of_text|>",
]
PROMPTS = [
    "Natalia sold clips to",
    "How many hours did she work?",
    "Answer: 4",
]


def train_tokenizer(questions, style):
    tokenizer = Tokenizer(models.BPE())
    if style == "gpt2":
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        specials = ["<|begin_of_text|>", "<|end_of_text|>"]
        vocab_size = 480
    else:
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        vocab_size = 440
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(questions, trainer)
    if style == "gpt2":
        bos = tokenizer.token_to_id("<|begin_of_text|>")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
            special_tokens=[("<|begin_of_text|>", bos)])
    else:
        tokenizer.add_tokens(["<think>"])
    return tokenizer


def randomize(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * noise)
            else:
                p.copy_(0.1 * noise if p.dim() == 1 else 0.15 * noise)


def greedy(model, prompt_ids, steps=8):
    ids = list(prompt_ids)
    tokens, log_probs, margins = [], [], []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids])).logits[0, -1].double()
            top = torch.topk(logits, 2)
            token = int(top.indices[0])
            tokens.append(token)
            log_probs.append(float(torch.log_softmax(logits, -1)[token]))
            margins.append(float(top.values[0] - top.values[1]))
            ids.append(token)
    return tokens, log_probs, margins


def build(name, arch, questions, out_root):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    folder = os.path.join(out_root, name)
    os.makedirs(folder, exist_ok=True)
    tokenizer = train_tokenizer(questions, "gpt2" if arch == "llama" else "qwen2")
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    if arch == "llama":
        bos, eos = tokenizer.token_to_id("<|begin_of_text|>"), tokenizer.token_to_id("<|end_of_text|>")
        common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=bos, eos_token_id=eos)
        theta, cls_config, cls_model = 10000.0, LlamaConfig, LlamaForCausalLM
        tok_config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
    else:
        end_of_text, im_end = tokenizer.token_to_id("<|endoftext|>"), tokenizer.token_to_id("<|im_end|>")
        # The model's vocabulary is padded past the tokenizer's, as Qwen2's is.
        common = dict(vocab_size=vocab + 8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=128,
                      rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False,
                      bos_token_id=end_of_text, eos_token_id=end_of_text)
        theta, cls_config, cls_model = 1000000.0, Qwen2Config, Qwen2ForCausalLM
        # tokenizer_config.json's EOS (<|im_end|>) differs from config.json's on purpose: it wins.
        tok_config = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    try:
        config = cls_config(**common, rope_parameters={"rope_type": "default", "rope_theta": theta})
    except TypeError:
        config = cls_config(**common, rope_theta=theta)
    torch.manual_seed(7)
    model = cls_model(config).eval()
    randomize(model, seed=11 if arch == "llama" else 12)
    if arch == "qwen2":
        model = model.to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save(os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 128, **tok_config}, f, indent=2)
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        print(f"{name}: {len(keys)} tensors, dtype {f.get_tensor(keys[0]).dtype}, lm_head stored: {'lm_head.weight' in keys}")
    print(f"{name}: config.json = {open(os.path.join(folder, 'config.json')).read()}")

    if arch == "llama":
        # The same weights in transformers' sharded layout (model.safetensors.index.json + shards).
        model.save_pretrained(folder + "-sharded", max_shard_size="60KB")
        shards = sorted(f for f in os.listdir(folder + "-sharded") if f.endswith(".safetensors"))
        print(f"{name}-sharded: {shards}")

    # The reference is the saved folder as transformers loads it, in float32, widened to float64. (Not
    # the model in memory: casting it to bf16 rounds RoPE's inv_freq buffer too, which loading does not.)
    model = cls_model.from_pretrained(folder, dtype=torch.float32).eval()
    reference = model.to(torch.float64)
    eos_id = tokenizer.token_to_id(tok_config["eos_token"])
    texts = []
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        with_special = tokenizer.encode(text, add_special_tokens=True).ids
        # Our Decode skips special tokens and stops at the first EOS (what a completion means).
        until_eos = ids[:ids.index(eos_id)] if eos_id in ids else ids
        texts.append({"text": text, "ids": ids, "ids_with_special": with_special,
                      "decoded": tokenizer.decode(until_eos, skip_special_tokens=True)})
    runs = []
    for prompt in PROMPTS:
        prompt_ids = tokenizer.encode(prompt, add_special_tokens=True).ids
        tokens, log_probs, margins = greedy(reference, prompt_ids)
        runs.append({"prompt": prompt, "prompt_ids": prompt_ids, "tokens": tokens, "log_probs": log_probs, "margins": margins})
        try:
            prompt = torch.tensor([prompt_ids])
            check = model.to(torch.float32).generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8,
                                                     do_sample=False, pad_token_id=0)[0, len(prompt_ids):].tolist()
        except Exception as e:  # the cross-check is printed only; the fixture does not depend on it
            check = f"generate failed: {e}"
        reference = model.to(torch.float64)
        print(f"{name}: greedy {tokens} (min margin {min(margins):.4f}); generate() in float32 agrees: {check == tokens}")
    logits_ids = tokenizer.encode(PROMPTS[1], add_special_tokens=True).ids
    with torch.no_grad():
        logits = reference(torch.tensor([logits_ids])).logits[0]
    expected = {"architecture": type(model).__name__, "eos": eos_id, "texts": texts, "greedy": runs,
                "logits_prompt": {"tokens": logits_ids, "logits": [[float(f"{x:.9g}") for x in row] for row in logits.tolist()]}}
    with open(os.path.join(folder, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)


def check_ours(folders, out_root):
    from transformers import AutoModelForCausalLM
    for folder in folders:
        model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
        model = model.to(torch.float64).eval()
        ours = json.load(open(os.path.join(folder, "our_logits.json")))
        with torch.no_grad():
            theirs = model(torch.tensor([ours["tokens"]])).logits[0]
        mine = torch.tensor(ours["logits"], dtype=torch.float64)
        diff = (theirs - mine).abs().max().item()
        relative = diff / theirs.abs().max().item()
        name = os.path.basename(folder.rstrip("/"))
        print(f"ours/{name}: {type(model).__name__} loaded (missing {info['missing_keys']}, unexpected {info['unexpected_keys']}); "
              f"logits {tuple(theirs.shape)} max abs diff {diff:.3e}, relative to max |logit| {relative:.3e}: {'OK' if relative < 1e-5 else 'NOT OK'}")
        os.makedirs(os.path.join(out_root, "ours", name), exist_ok=True)
        with open(os.path.join(out_root, "ours", name, "transformers_logits.json"), "w") as f:
            json.dump({"tokens": ours["tokens"], "logits": [[float(f"{x:.9g}") for x in row] for row in theirs.tolist()]}, f)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(HERE, "hf"))
    parser.add_argument("--data", default=os.path.join(HERE, "hf", "questions.jsonl"))
    parser.add_argument("--ours", nargs="*", default=[])
    args = parser.parse_args()
    questions = [json.loads(line)["question"] for line in open(args.data, encoding="utf-8") if line.strip()][:50]
    build("llama", "llama", questions, args.out)
    build("qwen2", "qwen2", questions, args.out)
    if args.ours:
        check_ours(args.ours, args.out)


if __name__ == "__main__":
    main()
