#!/usr/bin/env python3
"""TRL's GRPOTrainer on the workload of `cargo bench --bench grpo_step -- workload` (not part of
set-up or CI): one rollout batch = 4 prompts x 8 generations of SmolLM2-135M-Instruct (f32,
CPU), then 4 optimizer steps of 8 completions; phases and peak RSS per rollout batch.

Prompts: `datasets/math/train.jsonl`, levels 1 and 4, in file order (the warm-up batch takes
the first 4, the timed batches the next 4 each), each a conversational prompt
`[{"role": "user", "content": problem}]` that TRL renders with the model's chat template
(add_generation_prompt; SmolLM2's template adds its default system prompt, as Cove's does).
Sampling: temperature 1, top_p 1, top_k 0, up to `--max-new-tokens` (stops at EOS). Update:
AdamW, lr 1e-6 constant, weight decay 0, grad-norm clip 1.0, beta 0 (no KL, no reference
model), clip 0.2/0.2, `--loss-type` (default `bnpo`: the token mean over each mini-batch of
8, which is Cove's token-mean; TRL's `grpo` is a per-sequence mean, `dapo` a token mean over
the whole generation batch; all cost the same), f32, no gradient checkpointing, seed 1,
2 torch threads.

Phases per rollout batch (TRL methods wrapped with timers, see `Timers` below):
  generation     GRPOTrainer._generate_single_turn: `model.generate` over the 32 sequences
  prompt+decode  the rest of GRPOTrainer._generate: chat template + tokenisation, decoding
  reward         GRPOTrainer._calculate_rewards
  old log-probs  GRPOTrainer._get_per_token_logps_and_entropies called from
                 _generate_and_score_completions (no-grad forward over the 32 sequences in
                 chunks of per_device_train_batch_size = 8; TRL runs it because
                 gradient_accumulation_steps (1) % (steps_per_generation (4) x
                 num_iterations (1)) != 0)
  scoring other  the rest of _generate_and_score_completions (padding, advantages, metrics)
  update         the 4 optimizer steps: from each `on_step_begin` to `on_step_end` minus the
                 time in `_prepare_inputs` (which holds the generation of the step that
                 generates), i.e. loss forward + backward + grad clip + AdamW + zero_grad;
                 split into forward (compute_loss), backward (accelerator.backward) and
                 optimizer (optimizer.step, between the on_pre_optimizer_step and
                 on_optimizer_step callbacks)
  total          wall time from the first step's `on_step_begin` to the last step's
                 `on_step_end` (so it also holds the per-step logging and data loading)

Install TRL (optional for the project) into the project's venv without touching the pinned
torch 2.13.0 / transformers 5.24.0 / accelerate 1.15.0:

    .venv/bin/python -m pip install trl==1.16.0 --no-deps
    .venv/bin/python -m pip install datasets==5.2.0 pandas==3.1.1 pyarrow==26.0.1
    .venv/bin/python -m pip check   # "No broken requirements found."

(`datasets` 5.2.0 brings dill 0.4.1, multiprocess 0.70.19, xxhash 4.1.0, python-dateutil
4.0.0 and tzdata 2026.6; everything else TRL imports is already in the venv.)

Run:

    .venv/bin/python scripts/bench_trl_grpo.py --batches 3 --max-new-tokens 32 --json trl-32.json
    .venv/bin/python scripts/bench_trl_grpo.py --batches 3 --max-new-tokens 256 --json trl-256.json
"""

import argparse
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
}.items():
    os.environ.setdefault(_k, _v)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / ".cache/cove/models/smollm2-135m-instruct"
DEFAULT_DATA = ROOT / "datasets/math/train.jsonl"
LEVELS = (1, 4)
PROMPTS_PER_BATCH = 4
GENERATIONS = 8
MINI_BATCH = 8

PHASES = [
    ("generation_s", "generation"),
    ("prompt_decode_s", "prompt+decode"),
    ("reward_s", "reward"),
    ("old_logprob_s", "old log-probs"),
    ("scoring_other_s", "scoring other"),
    ("update_s", "update"),
    ("update_forward_s", "  forward"),
    ("update_backward_s", "  backward"),
    ("update_optimizer_s", "  optimizer"),
    ("total_s", "total"),
    ("unaccounted_s", "unaccounted"),
]

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def last_number(text):
    found = NUMBER.findall(text.replace(",", ""))
    return found[-1] if found else None


def same_number(a, b):
    if a is None or b is None:
        return False
    try:
        return float(a) == float(b)
    except ValueError:
        return a.strip() == b.strip()


def math_reward(completions, answer, **kwargs):
    """1.0 when the completion's last number equals the answer, else 0.0."""
    out = []
    for completion, ans in zip(completions, answer):
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        out.append(1.0 if same_number(last_number(text), str(ans)) else 0.0)
    return out


def load_rows(path, n):
    rows = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("level") in LEVELS:
                rows.append(r)
            if len(rows) == n:
                break
    if len(rows) < n:
        sys.exit(f"{path}: only {len(rows)} problems of levels {LEVELS}, {n} needed")
    return rows


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class Timers:
    """Wraps GRPOTrainer methods on the instance and records seconds per rollout batch."""

    def __init__(self, steps_per_generation):
        self.spg = steps_per_generation
        self.batches = []  # one dict per rollout batch
        self.step = -1  # optimizer step index (0-based)
        self.in_scoring = False
        self.step_t0 = None
        self.prepare_in_step = 0.0
        self.opt_t0 = None

    def cur(self):
        return self.batches[-1]

    def add(self, key, dt):
        b = self.cur()
        b[key] = b.get(key, 0.0) + dt

    def wrap(self, trainer, name, fn):
        orig = getattr(trainer, name)

        def wrapped(*a, **kw):
            return fn(orig, *a, **kw)

        setattr(trainer, name, wrapped)

    def install(self, trainer):
        t = self

        def timed(key):
            def fn(orig, *a, **kw):
                t0 = time.perf_counter()
                try:
                    return orig(*a, **kw)
                finally:
                    t.add(key, time.perf_counter() - t0)

            return fn

        def prepare(orig, *a, **kw):
            t0 = time.perf_counter()
            try:
                return orig(*a, **kw)
            finally:
                t.prepare_in_step += time.perf_counter() - t0

        def score(orig, *a, **kw):
            t.in_scoring = True
            t0 = time.perf_counter()
            try:
                return orig(*a, **kw)
            finally:
                t.add("score_all_s", time.perf_counter() - t0)
                t.in_scoring = False

        def generate(orig, *a, **kw):
            t0 = time.perf_counter()
            out = orig(*a, **kw)
            t.add("generate_all_s", time.perf_counter() - t0)
            prompt_ids, completion_ids = out[0], out[1]
            b = t.cur()
            b["sequences"] = b.get("sequences", 0) + len(completion_ids)
            b["completion_tokens"] = b.get("completion_tokens", 0) + sum(len(c) for c in completion_ids)
            b["prompt_tokens"] = b.get("prompt_tokens", 0) + sum(len(p) for p in prompt_ids)
            b["prompt_len_max"] = max(b.get("prompt_len_max", 0), max(len(p) for p in prompt_ids))
            b["completion_len_max"] = max(b.get("completion_len_max", 0), max(len(c) for c in completion_ids))
            return out

        def logps(orig, *a, **kw):
            t0 = time.perf_counter()
            try:
                return orig(*a, **kw)
            finally:
                dt = time.perf_counter() - t0
                if t.in_scoring:  # beta = 0: no reference model, so these are the old log-probs
                    t.add("old_logprob_s", dt)
                    b = t.cur()
                    b["old_logprob_calls"] = b.get("old_logprob_calls", 0) + 1

        self.wrap(trainer, "_prepare_inputs", prepare)
        self.wrap(trainer, "_generate_and_score_completions", score)
        self.wrap(trainer, "_generate", generate)
        self.wrap(trainer, "_generate_single_turn", timed("generation_s"))
        self.wrap(trainer, "_calculate_rewards", timed("reward_s"))
        self.wrap(trainer, "_get_per_token_logps_and_entropies", logps)
        self.wrap(trainer, "compute_loss", timed("update_forward_s"))
        self.wrap(trainer.accelerator, "backward", timed("update_backward_s"))

    # TrainerCallback hooks (called through `Callback` below)
    def on_step_begin(self):
        self.step += 1
        if self.step % self.spg == 0:
            self.batches.append({"first_step": self.step, "t_begin": time.perf_counter()})
        self.prepare_in_step = 0.0
        self.step_t0 = time.perf_counter()

    def on_pre_optimizer_step(self):
        self.opt_t0 = time.perf_counter()

    def on_optimizer_step(self):
        self.add("update_optimizer_s", time.perf_counter() - self.opt_t0)

    def on_step_end(self):
        now = time.perf_counter()
        self.add("update_s", now - self.step_t0 - self.prepare_in_step)
        b = self.cur()
        b["steps"] = b.get("steps", 0) + 1
        b["total_s"] = now - b["t_begin"]


def finish_batch(b):
    b = dict(b)
    b.pop("t_begin", None)
    for k in ("generation_s", "reward_s", "old_logprob_s", "update_forward_s", "update_backward_s", "update_optimizer_s"):
        b.setdefault(k, 0.0)
    b["prompt_decode_s"] = b.get("generate_all_s", 0.0) - b["generation_s"]
    b["scoring_other_s"] = b.get("score_all_s", 0.0) - b.get("generate_all_s", 0.0) - b["reward_s"] - b["old_logprob_s"]
    b["unaccounted_s"] = b["total_s"] - b.get("score_all_s", 0.0) - b["update_s"]
    b["response_len_mean"] = b["completion_tokens"] / max(b["sequences"], 1)
    return b


def main(args):
    import torch

    torch.set_num_threads(args.threads)

    import accelerate
    import datasets
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOConfig, GRPOTrainer

    transformers.logging.set_verbosity_warning()
    datasets.disable_progress_bars()
    transformers.set_seed(args.seed)

    n_batches = args.batches + 1  # + warm-up
    rows = load_rows(args.data, PROMPTS_PER_BATCH * n_batches)
    dataset = datasets.Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": r["problem"]}],
                "answer": str(r["answer"]),
                "level": r["level"],
                "id": r.get("id", ""),
            }
            for r in rows
        ]
    )

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    rss_after_load = peak_rss_gib()

    out_dir = tempfile.mkdtemp(prefix="bench-trl-grpo-")
    steps_per_generation = (PROMPTS_PER_BATCH * GENERATIONS) // MINI_BATCH  # 4
    config = GRPOConfig(
        output_dir=out_dir,
        # batch shape: 4 prompts x 8 generations, 4 optimizer steps of 8 completions
        per_device_train_batch_size=MINI_BATCH,
        gradient_accumulation_steps=1,
        steps_per_generation=steps_per_generation,
        num_generations=GENERATIONS,
        num_iterations=1,
        max_steps=steps_per_generation * n_batches,
        shuffle_dataset=False,  # file order
        # sampling
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        min_p=None,
        repetition_penalty=1.0,
        use_vllm=False,
        use_transformers_continuous_batching=False,
        # loss
        beta=0.0,
        epsilon=0.2,
        loss_type=args.loss_type,
        scale_rewards="group",
        importance_sampling_level="token",
        mask_truncated_completions=False,
        # optimizer
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        max_grad_norm=1.0,
        optim="adamw_torch",
        # precision / memory
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        # bookkeeping
        seed=args.seed,
        logging_steps=1,
        logging_strategy="steps",
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,
        log_completions=False,
    )

    timers = Timers(steps_per_generation)
    step_logs = []

    class Callback(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            timers.on_step_begin()

        def on_pre_optimizer_step(self, a, state, control, **kw):
            timers.on_pre_optimizer_step()

        def on_optimizer_step(self, a, state, control, **kw):
            timers.on_optimizer_step()

        def on_step_end(self, a, state, control, **kw):
            timers.on_step_end()

        def on_log(self, a, state, control, logs=None, **kw):
            if not logs or "loss" not in logs:
                return
            logs = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
            logs["step"] = state.global_step
            step_logs.append(logs)
            line = f"  step {state.global_step:3d}: loss {logs['loss']:+.4f}  grad norm {logs.get('grad_norm', 0.0):.3f}"
            if "reward" in logs:  # logged on the step that generated
                line += f"  reward {logs['reward']:.3f}  completion len {logs['completions/mean_length']:.1f}"
            print(line, flush=True)

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=math_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tok,
        callbacks=[Callback()],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    timers.install(trainer)

    first_prompt = tok.apply_chat_template(dataset[0]["prompt"], tokenize=False, add_generation_prompt=True)
    print(
        f"TRL {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, "
        f"accelerate {accelerate.__version__}, threads {torch.get_num_threads()}, device {trainer.accelerator.device}"
    )
    print(
        f"workload: {PROMPTS_PER_BATCH} prompts x {GENERATIONS} generations, up to {args.max_new_tokens} new tokens, "
        f"{steps_per_generation} optimizer steps of {MINI_BATCH}, loss_type {args.loss_type}, "
        f"1 warm-up + {args.batches} timed rollout batches ({config.max_steps} steps)"
    )

    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0

    batches = [finish_batch(b) for b in timers.batches]
    for b in batches:
        assert b["steps"] == steps_per_generation, b
        assert b["sequences"] == PROMPTS_PER_BATCH * GENERATIONS, b
        assert b.get("old_logprob_calls", 0) > 0, "TRL did not compute old log-probs (see docstring)"
    timed = batches[1:]
    assert len(timed) == args.batches, (len(timed), args.batches)

    summary = {}
    for key, _ in PHASES + [("response_len_mean", "")]:
        vals = [b[key] for b in timed]
        summary[key] = {"median": statistics.median(vals), "mean": statistics.fmean(vals), "per_batch": vals}

    print()
    print(f"{'phase (s per rollout batch)':28} {'median':>8} {'mean':>8}   warm-up")
    for key, label in PHASES:
        s = summary[key]
        print(f"{label:28} {s['median']:8.2f} {s['mean']:8.2f}   {batches[0][key]:7.2f}")
    s = summary["response_len_mean"]
    print(f"{'mean response (tokens)':28} {s['median']:8.1f} {s['mean']:8.1f}   {batches[0]['response_len_mean']:7.1f}")
    print(
        f"peak RSS {peak_rss_gib():.2f} GiB (after model load {rss_after_load:.2f} GiB); "
        f"old log-probs: {timed[0]['old_logprob_calls']} no-grad call per batch over {PROMPTS_PER_BATCH * GENERATIONS} "
        f"sequences in chunks of {MINI_BATCH}; train() wall {wall:.1f} s"
    )

    if args.json:
        fields = [
            "per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation",
            "generation_batch_size", "num_generations", "num_iterations", "max_steps", "shuffle_dataset",
            "max_completion_length", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
            "cache_implementation", "use_vllm", "use_transformers_continuous_batching", "beta", "epsilon",
            "epsilon_high", "delta", "loss_type", "scale_rewards", "importance_sampling_level",
            "mask_truncated_completions", "top_entropy_quantile", "entropy_coef", "learning_rate",
            "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon",
            "max_grad_norm", "optim", "bf16", "fp16", "gradient_checkpointing", "cast_lm_head_to_fp32",
            "disable_dropout", "pad_to_multiple_of", "use_cpu", "seed", "logging_steps", "eval_strategy",
            "save_strategy", "report_to", "dataloader_num_workers", "torch_compile", "use_liger_kernel",
        ]
        cfg = {}
        for f in fields:
            v = getattr(trainer.args, f, None)
            cfg[f] = v if isinstance(v, (bool, int, float, str, list, type(None))) else str(v)
        gen = {
            k: v
            for k, v in trainer.generation_config.to_dict().items()
            if isinstance(v, (bool, int, float, str, list, type(None)))
        }
        report = {
            "tool": "trl",
            "versions": {
                "trl": trl.__version__,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "accelerate": accelerate.__version__,
                "datasets": datasets.__version__,
                "python": sys.version.split()[0],
            },
            "workload": {
                "model": str(args.model),
                "dtype": "float32",
                "device": str(trainer.accelerator.device),
                "threads": torch.get_num_threads(),
                "data": str(args.data),
                "levels": list(LEVELS),
                "prompts_per_batch": PROMPTS_PER_BATCH,
                "generations": GENERATIONS,
                "mini_batch": MINI_BATCH,
                "optimizer_steps_per_batch": steps_per_generation,
                "new_tokens": args.max_new_tokens,
                "warmup_batches": 1,
                "batches_timed": args.batches,
                "prompt_ids": [[r["id"] for r in rows[i * 4:(i + 1) * 4]] for i in range(n_batches)],
                "first_prompt_text": first_prompt,
                "reward": "1.0 if the completion's last number equals the answer, else 0.0",
            },
            "grpo_config": cfg,
            "generation_config": gen,
            "timed_methods": {
                "generation_s": "GRPOTrainer._generate_single_turn",
                "prompt_decode_s": "GRPOTrainer._generate minus _generate_single_turn",
                "reward_s": "GRPOTrainer._calculate_rewards",
                "old_logprob_s": "GRPOTrainer._get_per_token_logps_and_entropies inside _generate_and_score_completions",
                "scoring_other_s": "the rest of GRPOTrainer._generate_and_score_completions",
                "update_s": "sum over the batch's optimizer steps of on_step_begin..on_step_end minus _prepare_inputs",
                "update_forward_s": "GRPOTrainer.compute_loss",
                "update_backward_s": "Accelerator.backward",
                "update_optimizer_s": "optimizer.step (on_pre_optimizer_step..on_optimizer_step)",
                "total_s": "first step's on_step_begin .. last step's on_step_end",
                "unaccounted_s": "total minus _generate_and_score_completions minus update",
            },
            "phases": summary,
            # medians at top level, named as in `grpo_step workload`'s JSON
            **{key: summary[key]["median"] for key, _ in PHASES},
            "response_len_mean": summary["response_len_mean"]["median"],
            "peak_rss_gib": peak_rss_gib(),
            "rss_after_model_load_gib": rss_after_load,
            "train_wall_s": wall,
            "warmup_batch": batches[0],
            "batches": timed,
            "logs": step_logs,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a Hugging Face folder")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSONL with problem, answer, level")
    p.add_argument("--batches", type=int, default=3, help="timed rollout batches (after one warm-up batch)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="max_completion_length")
    p.add_argument("--loss-type", default="bnpo", help="GRPOConfig.loss_type (bnpo = token mean per mini-batch)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="write the numbers and the configuration here")
    main(p.parse_args())
