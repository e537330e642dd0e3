#!/bin/bash
# One device call for the two goals that need a GPU (issues 15 and 19), prepared to fit one lease:
#   here, once:  python scripts/train_demo_reranker.py mine          # -> .train/ (50 MB)
#                echo /.train/ >> .git/info/exclude; echo /.whl/ >> .git/info/exclude
#                python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                    --implementation cp --platform manylinux2014_x86_64 -d .whl nanotoken==0.1.0
#   device tool: run(command="bash scripts/device_session.sh", carry=[".train", ".whl"], timeout_s=590)
# The working tree (~10 MB), .train and the 1 MB wheel make ~61 MB of the 64 MiB a call carries, so
# the demo the GPU check scores is rebuilt there from .train's float16 base and the shipped adapter
# (a second 45 MB checkpoint would not fit). Everything lands in $OUT:
#   gpu/      gpu_check's from-text rows (issue 19: packed fp16 >= 100,000 pairs/s from text)
#   r3e1.*    fine-tune with 3 random negatives, 1 epoch; r2e2.*: 2 random negatives, 2 epochs (issue 15)
# Judge the fine-tunes by the validation lines in their logs (queries 200-299; to beat: the shipped
# demo's 0.783 on BM25 candidates and 0.940 on random ones, stage 1 + CPU refine, both on the float16
# base these runs train on; 0.777 / 0.939 merged into the float32 original; docs/demo-reranker.md);
# queries 300-399 are measured only after shipping, with scripts/demo_mrr.py on the float32 merge.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true HF_HUB_OFFLINE=1
OUT=${OUT:?the device tool sets OUT}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site || echo "no nanotoken wheel: the from-text rows use tokenizers"

# 1. issue 19 first, alone on the GPU: a fine-tune running beside it would take its SMs.
python3 scripts/prepare_gpu_check.py --from-train .train --out /tmp/demo-fp16
FROM_TEXT="crossenc packed-fp16 + triton + graphs + in_flight 2"
ROWS="$FROM_TEXT|$FROM_TEXT, batch 1024 / 65536 tokens|$FROM_TEXT, pre-tokenized, batch 1024 / 65536 tokens"
timeout 240 python3 -m crossenc.bench.gpu_check --model /tmp/demo-fp16 --out "$OUT/gpu" --deadline 180 \
    --only "$ROWS" > "$OUT/gpu.log" 2>&1
cat "$OUT/gpu/gpu_check.md" 2>/dev/null || tail -20 "$OUT/gpu.log"

# 2. issue 15: two fine-tunes side by side (the shipped one was 3 configurations on one H200, 458 s).
T=scripts/train_demo_reranker.py
python3 $T train --seed 0 --random-negatives 3 --epochs 1 --out "$OUT/r3e1.safetensors" --log "$OUT/r3e1.json" \
    > "$OUT/r3e1.log" 2>&1 &
python3 $T train --seed 0 --random-negatives 2 --epochs 2 --out "$OUT/r2e2.safetensors" --log "$OUT/r2e2.json" \
    > "$OUT/r2e2.log" 2>&1 &
wait
for run in r3e1 r2e2; do
    echo "== $run"
    grep -v "Warning\|warn" "$OUT/$run.log" | grep "epoch\|device\|merged\|Error\|error" | tail -8
done
