#!/usr/bin/env python3
"""Builds the Hugging Face parity fixtures under tests/fixtures/ (not part of CI).

Two tiny random checkpoints, written and then re-read by transformers so the expected
values come from what transformers itself loads:

- tests/fixtures/qwen2/  Qwen2: tied embeddings, q/k/v bias, grouped-query attention,
  single model.safetensors, config.json as transformers 5 writes it (rope_parameters),
  chat template in chat_template.jinja (Qwen2.5's system/tools structure).
- tests/fixtures/llama/  Llama 3: untied lm_head, attention and MLP bias, one key/value
  head, explicit head_dim, llama3 RoPE scaling, sharded safetensors with
  model.safetensors.index.json, config.json in the transformers 4 hub layout
  (rope_theta + rope_scaling), chat template inline in tokenizer_config.json (Llama 3
  structure: trim, .strip(), raise_exception, trim_blocks/lstrip_blocks whitespace).

Each folder also gets expected.safetensors (input_ids_i, logits_i: f32 logits of each
unpadded sequence) and chat.json (messages, add_generation_prompt, the rendered text
and its token ids).

Regenerate (needs `.venv/bin/pip install transformers`, which leaves torch alone):
    .venv/bin/python scripts/make_fixtures.py
"""

import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders
from tokenizers.models import BPE
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = [("i", "s"), ("W", "h"), ("Wh", "a"), ("Wha", "t"), ("1", "2")]
MODEL_VOCAB = 112  # larger than the tokenizer's 104 tokens, as in real checkpoints

QWEN_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA_TEMPLATE = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "Be brief." %}
{%- endif %}
{{- "<|im_start|>system\\n" + system_message + "<|im_end|>\\n" }}
{% for message in messages %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {% endif %}
    <|im_start|>{{ message['role'] }}
{{ message['content'].strip() }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
"""

CHATS = [
    (
        [
            {"role": "system", "content": "  Answer with a number.  "},
            {"role": "user", "content": "What is 12+7?"},
            {"role": "assistant", "content": "19"},
            {"role": "user", "content": "What is 3*4?"},
        ],
        True,
    ),
    ([{"role": "user", "content": "What is 2+2?"}], False),
    ([{"role": "user", "content": "  Hi!\n"}], True),
]


def build_tokenizer():
    chars = ["\n"] + [chr(c) for c in range(0x20, 0x7F)]
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for c in chars:
        vocab[c] = len(vocab)
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(BPE(vocab=vocab, merges=MERGES))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIALS)
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def randomize(model, seed):
    """Replaces transformers' init (zero biases, unit norms) so every parameter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.3 * noise)
            else:
                p.copy_(0.3 * noise)


def write(name, model, tok_kwargs, template_inline, gen_cfg, config_json=None, shard=None):
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    if shard:
        model.save_pretrained(out, max_shard_size=shard)
    else:
        model.save_pretrained(out)
    if config_json is not None:
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(config_json, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(gen_cfg, f, indent=2)

    fast = PreTrainedTokenizerFast(tokenizer_object=build_tokenizer(), **tok_kwargs)
    fast.save_pretrained(out)
    cfg_path = os.path.join(out, "tokenizer_config.json")
    with open(cfg_path) as f:
        tcfg = json.load(f)
    if template_inline:
        tcfg["chat_template"] = LLAMA_TEMPLATE
    else:
        with open(os.path.join(out, "chat_template.jinja"), "w") as f:
            f.write(QWEN_TEMPLATE)
    with open(cfg_path, "w") as f:
        json.dump(tcfg, f, indent=2)

    # Everything below comes from what transformers reads back.
    tok = AutoTokenizer.from_pretrained(out)
    raw = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    chats = []
    for messages, gen in CHATS:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
        # Ids from tokenizer.json as the `tokenizers` library applies it. (transformers 5
        # swaps in Qwen2Tokenizer's own byte-level pipeline for model_type qwen2, which
        # real Qwen checkpoints already have in their tokenizer.json.)
        ids = raw.encode(text, add_special_tokens=False).ids
        chats.append(
            {"messages": messages, "add_generation_prompt": gen, "text": text, "ids": ids}
        )
    with open(os.path.join(out, "chat.json"), "w") as f:
        json.dump(chats, f, indent=1)

    seqs = [chats[1]["ids"], [5, 90, 17, 103, 44, 2, 0, 61, 111, 30, 8, 77, 99]]
    tensors = {}
    with torch.no_grad():
        for i, ids in enumerate(seqs):
            x = torch.tensor([ids])
            tensors[f"input_ids_{i}"] = x[0].to(torch.int64)
            tensors[f"logits_{i}"] = model(input_ids=x).logits[0].float().contiguous()
    save_file(tensors, os.path.join(out, "expected.safetensors"))
    print(f"{out}: {sorted(os.listdir(out))}")


def main():
    torch.manual_seed(0)
    qcfg = Qwen2Config(
        vocab_size=MODEL_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=2,
    )
    q = Qwen2ForCausalLM(qcfg)
    randomize(q, 1)
    write(
        "qwen2",
        q,
        dict(eos_token="<|im_end|>", pad_token="<|endoftext|>"),
        template_inline=False,
        gen_cfg={"eos_token_id": [2, 0], "pad_token_id": 0},
    )

    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    }
    lcfg = LlamaConfig(
        vocab_size=MODEL_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=128,
        rope_theta=500000.0,
        rope_scaling=scaling,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        attention_bias=True,
        mlp_bias=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    llama = LlamaForCausalLM(lcfg)
    randomize(llama, 2)
    hub_config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": MODEL_VOCAB,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "hidden_act": "silu",
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": scaling,
        "tie_word_embeddings": False,
        "attention_bias": True,
        "mlp_bias": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    write(
        "llama",
        llama,
        dict(bos_token="<|im_start|>", eos_token="<|im_end|>"),
        template_inline=True,
        gen_cfg={"bos_token_id": 1, "eos_token_id": 2},
        config_json=hub_config,
        shard="20KB",
    )


if __name__ == "__main__":
    sys.exit(main())
