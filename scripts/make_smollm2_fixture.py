#!/usr/bin/env python3
"""Builds tests/fixtures/smollm2/expected.json from the converted SmolLM2 folder with
transformers (not part of CI; the file is committed).

What transformers itself computes on `.cache/cove/models/smollm2-135m-instruct/` (the
folder `scripts/setup.sh` converts), for the parity test in tests/suite/model_smollm2.rs:

- chats: messages, add_generation_prompt, the text `apply_chat_template` renders and the
  token ids of that text;
- tokenizer: a corpus of strings (unicode, tabs, code, whitespace runs, special tokens)
  with their ids (`encode`, no added specials) and `decode(ids)`;
- logits: for each prompt, the ids, and at the last LAST_POSITIONS positions the top-K
  logits (values and ids), the logsumexp and the sum over the vocabulary (f32 model,
  computed in f64 from its f32 logits).

Regenerate: `.venv/bin/python scripts/make_smollm2_fixture.py`.
"""

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / ".cache/cove/models/smollm2-135m-instruct"
OUT = ROOT / "tests/fixtures/smollm2/expected.json"
TOP_K = 8
LAST_POSITIONS = 4

CHATS = [
    ([{"role": "user", "content": "What is 3+4?"}], True),
    (
        [
            {"role": "system", "content": "Answer with a number."},
            {"role": "user", "content": "What is 12+7?"},
            {"role": "assistant", "content": "19"},
            {"role": "user", "content": "And 3*4?"},
        ],
        True,
    ),
    ([{"role": "user", "content": "  Hi!\n\tTabs and ünïcödé 🙂"}], False),
]

CORPUS = [
    "Hello, world!",
    "What is 27-5? The answer is \\boxed{22}.",
    "def f(x):\n\treturn x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) { s += a[i]; }",
    "Ünïcödé: naïve café, 日本語のテキスト, Ελληνικά, emoji 🙂🚀",
    "   leading spaces and trailing   ",
    "tabs\tin\t\tthe middle\n\nand blank lines\r\n",
    "<|im_start|>user\nspecial tokens<|im_end|>",
    "$\\frac{1}{2} + \\sqrt{3}$ and 3.14159",
    "",
]


def main():
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    chats = []
    for messages, gen in CHATS:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
        ids = tok.encode(text, add_special_tokens=False)
        chats.append({"messages": messages, "add_generation_prompt": gen, "text": text, "ids": ids})
    corpus = []
    for text in CORPUS:
        ids = tok.encode(text, add_special_tokens=False)
        corpus.append({"text": text, "ids": ids, "decoded": tok.decode(ids)})
    prompts = [c["ids"] for c in chats[:2]] + [corpus[2]["ids"], corpus[4]["ids"]]
    logits = []
    with torch.no_grad():
        for ids in prompts:
            out = model(input_ids=torch.tensor([ids])).logits[0].double()
            positions = []
            for p in range(max(0, len(ids) - LAST_POSITIONS), len(ids)):
                row = out[p]
                top = torch.topk(row, TOP_K)
                positions.append(
                    {
                        "position": p,
                        "top_ids": top.indices.tolist(),
                        "top_values": top.values.tolist(),
                        "logsumexp": torch.logsumexp(row, 0).item(),
                        "sum": row.sum().item(),
                    }
                )
            logits.append({"ids": ids, "positions": positions})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((MODEL / "cove-model.json").read_text())
    OUT.write_text(
        json.dumps(
            {
                "model_sha256": manifest["files"]["model.safetensors"],
                "top_k": TOP_K,
                "chats": chats,
                "corpus": corpus,
                "logits": logits,
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
