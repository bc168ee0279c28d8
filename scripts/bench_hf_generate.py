#!/usr/bin/env python3
"""transformers' `generate`, the counterpart of `cargo bench --bench rollout` (not part of
CI): same prompts, 32 new tokens each (EOS suppressed), plain sampling at temperature 1,
f32. Cases: `batch1` (1 prompt x 1 sample) and `16x8` for the tiny checkpoint, `4x8` for
SmolLM2-135M-Instruct.

    cargo run --bin cove -- export-tiny target/tiny-hf
    .venv/bin/python scripts/bench_hf_generate.py target/tiny-hf
    .venv/bin/python scripts/bench_hf_generate.py .cache/cove/models/smollm2-135m-instruct --cases 4x8 --reps 5
"""

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

NEW_TOKENS = 32


CASES = {"batch1": (1, 1), "16x8": (16, 8), "4x8": (4, 8)}


def main(path, cases, reps):
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    texts = [
        tok.apply_chat_template(
            [{"role": "user", "content": f"What is {7 * i + 3}+{130 - 11 * i}?"}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for i in range(16)
    ]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in cases:
        n_prompts, n = CASES[name]
        enc = tok(texts[:n_prompts], return_tensors="pt", padding=True, add_special_tokens=False)
        kwargs = dict(
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            num_return_sequences=n,
            pad_token_id=tok.pad_token_id,
        )
        with torch.no_grad():
            model.generate(**enc, **kwargs)  # warm-up
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                out = model.generate(**enc, **kwargs)
                times.append(time.perf_counter() - t0)
        generated = (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
        assert generated == n_prompts * n * NEW_TOKENS, generated
        times.sort()
        median = times[len(times) // 2]
        print(f"{name}: {generated} tokens, median {median * 1e3:.1f} ms, {generated / median:.0f} tokens/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a Hugging Face folder")
    parser.add_argument("--cases", default="batch1,16x8", help=f"comma-separated, of {sorted(CASES)}")
    parser.add_argument("--reps", type=int, default=10, help="timed runs per case (the median is printed)")
    args = parser.parse_args()
    main(args.path, args.cases.split(","), args.reps)
