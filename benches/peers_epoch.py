#!/usr/bin/env python3
"""Epoch time on real data: pasa train beside the same model in PyTorch eager, in one run.

For each data file and each model it runs, one after the other on the same CPU threads:

  pasa    `pasa train --device cpu --data FILE --format F --model M --n --d --blocks
          --heads --batch --epochs K --eval-every 1000 --patience 0 --out <tmp>` with
          RAYON_NUM_THREADS=--threads, and reads each epoch's `train_secs` from the run's
          times.jsonl (evaluation, `eval_secs`, is timed apart and left out);
  torch   the eager model of benches/peers.py (`TorchModel`, the one `peers.py --check`
          validates against pasa train/eval), torch.set_num_threads(--threads), trained
          for K epochs after one untimed warm-up step; each epoch timed from its first
          batch to its last optimiser step (the loss summed on the side, read once).

Both sides do the same epoch (src/train.rs): the data read as pasa reads it (src/data/:
`pairs`, `lines`, `u-data` sorted by (user, time) stably; items numbered by first appearance
unless the ids are already exactly 1..=max), the leave-one-out split (src/data/split.rs: the
training prefix is all but the last two items, or the whole sequence below 3 items), the
training users (a prefix of at least 2 items), one window per user and epoch (`window`: the
last n+1 items of the prefix → inputs and targets shifted by one, left-padded with 0),
users shuffled each epoch (by another RNG than pasa's; the order does not matter for timing),
batches of --batch users; the same model, dropout, loss (mean softmax cross-entropy over
items 1..|I| at every non-pad target: logits at every slot, ignore_index for padding) and
Adam (β 0.9/0.98, lr 1e-3, ε 1e-8). The model's d_ff, dropout and rank are read from the
run's config.toml, so both sides train what pasa's defaults make of the flags.

Checked, not assumed (the run stops if any differs):
  * the sequences: `pasa data convert FILE --format F` writes pasa's own reading of the file,
    which must equal this script's, user by user and item by item (ids included);
  * users, items and interactions against pasa train's `data:` line; training users
    (= windows per epoch) and batches per epoch against its `model …:` line, and the
    parameter count against the PyTorch model's;
  * the non-pad target positions per epoch against pasa's: times.jsonl's tokens_per_sec is
    tokens over the epoch's elapsed time (training, plus evaluation where the tokens rate is
    taken after it), so tokens_per_sec × seconds must give this script's count to 0.5 %.

Usage (see benches/NOTES.md, "PyTorch side by side", "Epochs on real data"):
  /work/torch-venv/bin/python benches/peers_epoch.py \
      --data /work/shared/datasets/ml-100k-u.data --format u-data \
      --data /work/shared/datasets/ml-1m.txt --format pairs \
      --model sasrec,pasa --n 200 --d 64 --blocks 2 --heads 1 --batch 128 --epochs 1 \
      --threads 2 --json epochs.json
Dependencies: torch and the standard library (peers.py beside this file).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from peers import (  # noqa: E402
    MODELS,
    Spec,
    TorchModel,
    default_threads,
    make_optimizer,
    pasa_bin,
    pasa_param_count,
)

FORMATS = ("pairs", "lines", "u-data")
MIN_EVAL_LEN = 3  # src/data/split.rs
SEED = 17


# ----------------------------------------------------------------------------------------
# Data, as src/data/ reads it


class Data:
    """Users' time-ordered sequences of dense item ids (1..=items), users in file order
    (pairs, lines) or ascending (u-data), as pasa's `Sequences`."""

    def __init__(self, user_ids: list[int], seqs: list[list[int]], items: int):
        self.user_ids = user_ids
        self.seqs = seqs
        self.items = items

    @property
    def interactions(self) -> int:
        return sum(len(s) for s in self.seqs)


def content_lines(raw: bytes):
    """(line number, bytes) of each non-blank line; CRLF and a UTF-8 BOM tolerated."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for k, line in enumerate(raw.split(b"\n"), 1):
        line = line.rstrip(b"\r")
        if line.strip():
            yield k, line


def read_raw(path: Path, fmt: str) -> tuple[list[int], list[list[int]]]:
    """Per-user sequences of original item ids (src/data/parse.rs)."""
    data = path.read_bytes()
    users: list[int] = []
    seqs: list[list[int]] = []
    seen: set[int] = set()

    def new_user(u: int, line: int, why: str):
        if u in seen:
            sys.exit(f"error: {path}:{line}: user {u} already appeared; {why}")
        seen.add(u)
        users.append(u)
        seqs.append([])

    if fmt == "pairs":
        for line, l in content_lines(data):
            f = l.split()
            if len(f) != 2:
                sys.exit(f"error: {path}:{line}: expected 2 fields (user item), found {len(f)}")
            u, i = int(f[0]), int(f[1])
            if not users or users[-1] != u:
                new_user(u, line, "a pairs file keeps each user's lines together")
            seqs[-1].append(i)
    elif fmt == "lines":
        for line, l in content_lines(data):
            f = l.split()
            if len(f) < 2:
                sys.exit(f"error: {path}:{line}: expected 'user item1 item2 …'")
            new_user(int(f[0]), line, "a file with one user per line lists each user once")
            seqs[-1].extend(int(x) for x in f[1:])
    else:  # u-data: user \t item \t rating \t timestamp, sorted by (user, time), stable
        recs = []
        for line, l in content_lines(data):
            f = l.split(b"\t")
            if len(f) != 4:
                sys.exit(f"error: {path}:{line}: expected 4 tab-separated fields, found {len(f)}")
            recs.append((int(f[0].strip()), int(f[3].strip()), int(f[1].strip())))
        recs.sort(key=lambda r: (r[0], r[1]))  # Python's sort is stable
        for u, _, i in recs:
            if not users or users[-1] != u:
                users.append(u)
                seqs.append([])
            seqs[-1].append(i)
    if not users:
        sys.exit(f"error: {path}: empty file (no interactions)")
    return users, seqs


def load(path: Path, fmt: str) -> Data:
    """src/data/build.rs without k-core or --renumber: items numbered by first appearance
    (users in order, each user's items in order), unless the ids are exactly 1..=max."""
    users, raw = read_raw(path, fmt)
    first: dict[int, int] = {}
    for s in raw:
        for i in s:
            if i not in first:
                first[i] = len(first) + 1
    labels = set(first)
    dense = 0 not in labels and max(labels) == len(labels)
    seqs = raw if dense else [[first[i] for i in s] for s in raw]
    return Data(users, seqs, len(labels))


def read_pasa_binary(path: Path) -> Data:
    """The binary file of `pasa data convert` (src/data/binary.rs)."""
    raw = path.read_bytes()
    if raw[:8] != b"PASASEQ\0":
        sys.exit(f"error: {path}: not a pasa binary file")
    users, items, inter = struct.unpack_from("<3Q", raw, 16)
    at = 40
    offsets = struct.unpack_from(f"<{users + 1}I", raw, at)
    at += 4 * (users + 1)
    flat = struct.unpack_from(f"<{inter}I", raw, at)
    at += 4 * inter
    at += (-at) % 8
    user_ids = list(struct.unpack_from(f"<{users}Q", raw, at))
    seqs = [list(flat[offsets[u]:offsets[u + 1]]) for u in range(users)]
    return Data(user_ids, seqs, items)


def check_against_pasa_reading(binary: Path, path: Path, fmt: str, mine: Data, tmp: Path):
    out = tmp / "seqs.bin"
    r = subprocess.run([str(binary), "data", "convert", str(path), str(out), "--format", fmt],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: pasa data convert failed:\n{r.stderr.strip()}")
    theirs = read_pasa_binary(out)
    if (mine.user_ids, mine.items) != (theirs.user_ids, theirs.items):
        sys.exit(f"error: {path}: users or item count differ from pasa's reading "
                 f"({len(mine.user_ids)} users, {mine.items} items here; "
                 f"{len(theirs.user_ids)}, {theirs.items} in pasa)")
    for u, (a, b) in enumerate(zip(mine.seqs, theirs.seqs)):
        if a != b:
            sys.exit(f"error: {path}: user {mine.user_ids[u]}'s sequence differs from pasa's")


# ----------------------------------------------------------------------------------------
# The epoch, as src/train.rs builds it


def train_prefix(s: list[int]) -> list[int]:
    """`Split::train`: all but the last two items; the whole sequence below 3 items."""
    return s[:-2] if len(s) >= MIN_EVAL_LEN else s


def window(prefix: list[int], n: int) -> tuple[list[int], list[int], int]:
    """`split::window`: the last n+1 items of the prefix → inputs and shifted targets,
    left-padded with 0; returns (inputs, targets, start)."""
    real = min(max(len(prefix) - 1, 0), n)
    start = n - real
    frm = max(len(prefix) - 1, 0) - real
    inputs = [0] * start + prefix[frm:frm + real]
    targets = [0] * start + prefix[frm + 1:frm + 1 + real]
    return inputs, targets, start


class Epoch:
    """Every training user's window (`train_users`, `make_batch`), built once."""

    def __init__(self, data: Data, n: int):
        prefixes = [train_prefix(s) for s in data.seqs]
        users = [u for u, p in enumerate(prefixes) if len(p) >= 2]
        rows = [window(prefixes[u], n) for u in users]
        self.n = n
        self.windows = len(users)
        self.inputs = torch.tensor([r[0] for r in rows], dtype=torch.long)
        self.targets = torch.tensor([r[1] for r in rows], dtype=torch.long)
        self.start = torch.tensor([r[2] for r in rows], dtype=torch.long)
        self.tokens = int((self.targets != 0).sum())

    def batches(self, batch: int, rng: random.Random) -> list[torch.Tensor]:
        order = list(range(self.windows))
        rng.shuffle(order)
        return [torch.tensor(order[k:k + batch]) for k in range(0, self.windows, batch)]


def torch_epochs(spec: Spec, ep: Epoch, batch: int, epochs: int, log) -> dict:
    """Train `epochs` epochs of the eager model after one warm-up step; wall time of each."""
    torch.manual_seed(SEED)
    model = TorchModel(spec, "cpu").train()
    opt, adam = make_optimizer(model)
    rng = random.Random(SEED)

    def step(idx: torch.Tensor) -> torch.Tensor:
        ids, targets, start = ep.inputs[idx], ep.targets[idx], ep.start[idx]
        opt.zero_grad(set_to_none=True)
        loss = model(ids, targets, start)
        loss.backward()
        opt.step()
        return loss.detach()

    step(ep.batches(batch, rng)[0])  # warm-up: first-call allocations, Adam's state
    secs, losses = [], []
    for e in range(1, epochs + 1):
        batches = ep.batches(batch, rng)
        total = torch.zeros(())
        t0 = time.perf_counter()
        for idx in batches:
            total += step(idx)
        mean = float(total) / len(batches)
        secs.append(time.perf_counter() - t0)
        losses.append(mean)
        log(f"    torch epoch {e}/{epochs}: {secs[-1]:.2f} s, loss {mean:.4f}")
        if not math.isfinite(mean):
            sys.exit("error: the PyTorch loss is not finite")
    return {"epoch_secs": secs, "train_loss": losses, "adam": adam,
            "params": sum(p.numel() for p in model.parameters())}


# ----------------------------------------------------------------------------------------
# pasa


DATA_LINE = re.compile(r"^data: .* \((\d+) users, (\d+) items, (\d+) interactions\)", re.M)
MODEL_LINE = re.compile(r"^model (\S+): (\d+) parameters; (\d+) training users, (\d+) evaluated; "
                        r"(\d+) batches of (\d+) per epoch", re.M)


def pasa_epochs(binary: Path, path: Path, fmt: str, model: str, a, out: Path) -> dict:
    cmd = [str(binary), "train", "--device", "cpu", "--data", str(path), "--format", fmt,
           "--model", model, "--n", str(a.n), "--d", str(a.d), "--blocks", str(a.blocks),
           "--heads", str(a.heads), "--batch", str(a.batch), "--epochs", str(a.epochs),
           "--eval-every", str(max(1000, a.epochs + 1)), "--patience", "0", "--out", str(out)]
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr.strip()[-3000:]}")
    d, m = DATA_LINE.search(r.stderr), MODEL_LINE.search(r.stderr)
    if not d or not m:
        sys.exit(f"error: pasa train's stderr has no data: or model line:\n{r.stderr[-3000:]}")
    times = [json.loads(x) for x in (out / "times.jsonl").read_text().splitlines() if x.strip()]
    cfg = tomllib.loads((out / "config.toml").read_text())
    return {
        "command": f"RAYON_NUM_THREADS={a.threads} " + " ".join(cmd),
        "users": int(d[1]), "items": int(d[2]), "interactions": int(d[3]),
        "params": int(m[2]), "train_users": int(m[3]), "batches": int(m[5]),
        "epoch_secs": [t["train_secs"] for t in times],
        "eval_secs": [t["eval_secs"] for t in times],
        "tokens_per_sec": [t["tokens_per_sec"] for t in times],
        "device": times[0].get("device") if times else None,
        "model": cfg["model"],
    }


def pasa_tokens_agree(p: dict, tokens: int) -> tuple[bool, list[float]]:
    """Whether tokens_per_sec × (train, or train + eval, seconds) gives `tokens` (0.5 %)."""
    implied = []
    for tps, tr, ev in zip(p["tokens_per_sec"], p["epoch_secs"], p["eval_secs"]):
        cands = [tps * tr, tps * (tr + ev)]
        best = min(cands, key=lambda x: abs(x - tokens))
        implied.append(best)
    ok = all(abs(x - tokens) <= 0.005 * tokens for x in implied)
    return ok, implied


# ----------------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(
        description="Time training epochs on real data: pasa train beside PyTorch eager.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", action="append", required=True, type=Path,
                   help="data file (repeat for several)")
    p.add_argument("--format", action="append", choices=FORMATS,
                   help="format of each --data (one for all, or one per --data)")
    p.add_argument("--model", default="sasrec,pasa", help="models, comma-separated")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1,
                   help="epochs on each side (PyTorch's after one warm-up step)")
    p.add_argument("--threads", type=int, default=default_threads(),
                   help="torch threads, and RAYON_NUM_THREADS for pasa "
                        "(default: RAYON_NUM_THREADS, else the CPUs this process may use)")
    p.add_argument("--pasa", help="pasa binary (default: $PASA_BIN, else target/release/pasa)")
    p.add_argument("--skip-pasa", action="store_true",
                   help="time PyTorch alone (d_ff = d, dropout 0.2, rank 32; no checks "
                        "against pasa)")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    a = p.parse_args()
    models = [m for m in a.model.split(",") if m]
    for m in models:
        if m not in MODELS:
            p.error(f"unknown model {m!r} ({', '.join(MODELS)})")
    formats = a.format or []
    if len(formats) == 1:
        formats = formats * len(a.data)
    if len(formats) != len(a.data):
        p.error("give --format once, or once per --data")
    for key in ("n", "d", "blocks", "heads", "batch", "epochs", "threads"):
        if getattr(a, key) < 1:
            p.error(f"--{key} must be at least 1")
    if a.d % a.heads:
        p.error(f"--heads {a.heads} does not divide --d {a.d}")
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if not a.quiet else (lambda s: None)

    torch.set_num_threads(a.threads)
    binary = None if a.skip_pasa else pasa_bin(a.pasa)
    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="peers-epoch-") as tmp:
        tmp = Path(tmp)
        for path, fmt in zip(a.data, formats):
            data = load(path, fmt)
            name = path.name
            log(f"{name}: {len(data.seqs)} users, {data.items} items, "
                f"{data.interactions} interactions")
            if binary:
                check_against_pasa_reading(binary, path, fmt, data, tmp)
                log("  every sequence equals pasa's reading (pasa data convert)")
            if a.n > max(len(s) for s in data.seqs):
                sys.exit(f"error: --n {a.n} is longer than every sequence of {path}")
            ep = Epoch(data, a.n)
            batches = math.ceil(ep.windows / a.batch)
            log(f"  {ep.windows} windows ({batches} batches of {a.batch}), "
                f"{ep.tokens} non-pad targets per epoch")
            for m in models:
                row = {"dataset": name, "format": fmt, "model": m,
                       "users": len(data.seqs), "items": data.items,
                       "interactions": data.interactions, "windows": ep.windows,
                       "batches": batches, "tokens": ep.tokens}
                spec = Spec(m, data.items, a.n, a.d, a.blocks, a.heads, d_ff=a.d)
                if binary:
                    log(f"  {m}: pasa train ({a.epochs} epochs) ...")
                    pr = pasa_epochs(binary, path, fmt, m, a, tmp / f"{name}-{m}")
                    mc = pr.pop("model")
                    spec = Spec(m, mc["items"], mc["n"], mc["d"], mc["blocks"], mc["heads"],
                                mc["d_ff"], mc["dropout"], mc["rank"])
                    ok_tokens, implied = pasa_tokens_agree(pr, ep.tokens)
                    checks = {
                        "users": (pr["users"], len(data.seqs)),
                        "items": (pr["items"], data.items),
                        "interactions": (pr["interactions"], data.interactions),
                        "windows (training users)": (pr["train_users"], ep.windows),
                        "batches": (pr["batches"], batches),
                        "parameters": (pr["params"], pasa_param_count(spec)),
                    }
                    bad = [f"{k}: pasa {x}, here {y}" for k, (x, y) in checks.items() if x != y]
                    if not ok_tokens:
                        bad.append(f"non-pad targets: pasa's tokens_per_sec implies "
                                   f"{[round(x) for x in implied]}, here {ep.tokens}")
                    if bad:
                        failures += [f"{name} {m}: {b}" for b in bad]
                    log(f"    pasa: {', '.join(f'{s:.2f} s' for s in pr['epoch_secs'])}; "
                        f"counts {'agree' if not bad else 'DIFFER'} (tokens implied by "
                        f"tokens_per_sec: {', '.join(f'{x:.0f}' for x in implied)})")
                    row["pasa"] = pr
                    row["pasa_tokens_implied"] = implied
                log(f"  {m}: torch eager ({a.epochs} epochs after 1 warm-up step) ...")
                tr = torch_epochs(spec, ep, a.batch, a.epochs, log)
                if tr["params"] != pasa_param_count(spec):
                    failures.append(f"{name} {m}: torch has {tr['params']} parameters, "
                                    f"pasa's layout {pasa_param_count(spec)}")
                row["torch"] = tr
                row["spec"] = {k: getattr(spec, k) for k in
                               ("items", "n", "d", "blocks", "heads", "d_ff", "dropout", "rank")}
                pasa_s = statistics.median(row["pasa"]["epoch_secs"]) if binary else None
                torch_s = statistics.median(tr["epoch_secs"])
                row["pasa_s"], row["torch_s"] = pasa_s, torch_s
                row["ratio"] = torch_s / pasa_s if pasa_s else None
                rows.append(row)

    result = {
        "shape": {k: getattr(a, k) for k in ("n", "d", "blocks", "heads", "batch")},
        "epochs": a.epochs,
        "threads": a.threads,
        "torch": {"version": torch.__version__, "threads": torch.get_num_threads()},
        "rows": rows,
        "failures": failures,
    }
    print(f"shape: n {a.n}, d {a.d}, blocks {a.blocks}, heads {a.heads}, batch {a.batch}; "
          f"{a.epochs} epoch(s) each side (median); {a.threads} threads each; "
          f"torch {torch.__version__} eager")
    print()
    print("| dataset | model | windows | non-pad targets | pasa s/epoch | torch eager s/epoch "
          "| torch / pasa |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        pasa_s = "—" if r["pasa_s"] is None else f"{r['pasa_s']:.2f}"
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        print(f"| {r['dataset']} | {r['model']} | {r['windows']} | {r['tokens']} | {pasa_s} "
              f"| {r['torch_s']:.2f} | {ratio} |")
    print("\nratio = torch eager s/epoch / pasa s/epoch (> 1: pasa is faster); pasa's "
          "train_secs, evaluation excluded on both sides")
    if failures:
        print("\ncounts that differ:\n" + "\n".join(f"* {f}" for f in failures))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
