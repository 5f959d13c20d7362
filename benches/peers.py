#!/usr/bin/env python3
"""The PyTorch side of every `pasa bench` case, measured in the same run as pasa's.

For each model (sasrec, rope, parec, fparec, pasa) and each case of `pasa bench`
(src/bench/mod.rs):

  attention_fwd   one fused attention call, training mode (dropout 0.2 on the probabilities),
                  on standard-normal q, k, v (or positional scores P), U and L, full windows;
  attention_bwd   the backward of that call alone (pasa times it separately, from the saved
                  y and lse): here `torch.autograd.grad(y, inputs, dy, retain_graph=True)` on
                  a forward run once before the timing, every input's gradient computed;
  train_step      zero_grad, forward, full softmax cross-entropy, backward, Adam
                  (β 0.9/0.98, lr 1e-3, ε 1e-8) on a fixed batch of full windows of uniform
                  random items with uniform random targets (`cases::random_batch`),

it times PyTorch peers of the same model at the same shape:

  eager    the model below, written out in plain PyTorch ops;
  compile  the same function under `torch.compile` (default mode);
  flex     FlexAttention with U as `score_mod` and a causal block mask: U only (L cannot be
           expressed), no dropout; attention cases of the content-score models;
  sdpa     `F.scaled_dot_product_attention(is_causal=True)`: no U, no L, dropout 0.2;
           attention cases of the content-score models, and the training step of sasrec and
           rope (exact there: they have no U or L).

It runs `pasa bench --json` itself first (same device, shape, warm-up and iteration counts)
and prints one Markdown table: each case's pasa median, each peer's median and the ratio
peer / pasa (> 1: pasa is faster). Timing as pasa's: `--warmup` untimed calls, then
`--iters` timed ones, each followed by a device synchronisation; median of the timed calls.

The model (DESIGN §1, src/models.rs `Model::forward`), f32 throughout:
  x = Drop(√d·E[ids] + PE)                       (PE only with a position embedding)
  per block: h = LN1(x); q, k, v = linear(h)       (rope: q, k rotated; parec/fparec: no q, k)
             c = q·kᵀ/√dh  or  P/√dh,  s = c ⊙ U (Toeplitz U_ij = t[i−j]), causal softmax,
             dropout on p, y_i = Σ_j p_ij L_ij v_j (L packed lower-triangular, i(i+1)/2 + j)
             x = x + Drop(y W_O + b_O);  x = x + Drop(Drop(ReLU(LN2(x) W1 + b1)) W2 + b2)
  logits = LN_f(x)·E[1:]ᵀ (tied; column 0, padding, is never a class), mean CE over targets.
Padded windows (left padding, `start`) are supported by the eager model (used by `--check`);
the benchmark, like `pasa bench`, uses full windows only.

`--check` validates the PyTorch model cheaply instead of timing: against a literal loop
implementation of DESIGN §1 (forward and every gradient), SDPA (U ≡ 1, L ≡ 1),
FlexAttention (Toeplitz U), and against pasa itself: parameter names and shapes of a tiny
`pasa train` checkpoint, and `pasa eval`'s ranking metrics recomputed from that checkpoint's
parameters (the forward pass of every model, rope, padding, U and L included).

Usage (see benches/NOTES.md, "PyTorch side by side"):
  /work/torch-venv/bin/python benches/peers.py --device cpu
  /work/torch-venv/bin/python benches/peers.py --device cuda --json peers.json
  /work/torch-venv/bin/python benches/peers.py --check
Whole training epochs on real data, beside `pasa train`: benches/peers_epoch.py.
Dependencies: torch and the standard library.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODELS = ("sasrec", "rope", "parec", "fparec", "pasa")
CASES = ("attention_fwd", "attention_bwd", "train_step")
PEERS = ("eager", "compile", "flex", "sdpa")
SEED = 17
LN_EPS = 1e-5

# pos_emb, scores, U, L of each preset (DESIGN §1, `ModelConfig::of`).
PRESETS = {
    "sasrec": (True, "content", None, None),
    "rope": (False, "rope", None, None),
    "parec": (True, "learned", None, None),
    "fparec": (True, "factorised", None, None),
    "pasa": (False, "content", "toeplitz", "full"),
}


# ----------------------------------------------------------------------------------------
# The model


@dataclasses.dataclass(frozen=True)
class Spec:
    """One model at one shape, as `BenchShape::model` builds it (d_ff = d, dropout 0.2,
    rank 32, ReLU, layer-wise kernels shared by the heads of a block)."""

    model: str
    items: int
    n: int
    d: int
    blocks: int
    heads: int
    d_ff: int
    dropout: float = 0.2
    rank: int = 32

    @property
    def pos_emb(self) -> bool:
        return PRESETS[self.model][0]

    @property
    def scores(self) -> str:
        return PRESETS[self.model][1]

    @property
    def u(self) -> str | None:
        return PRESETS[self.model][2]

    @property
    def l(self) -> str | None:  # noqa: E743
        return PRESETS[self.model][3]

    @property
    def content(self) -> bool:
        """q·k scores (sasrec, rope, pasa), as opposed to positional ones (parec, fparec)."""
        return self.scores in ("content", "rope")

    @property
    def dh(self) -> int:
        return self.d // self.heads


def kernel_len(kind: str | None, n: int) -> int:
    return {None: 0, "toeplitz": n, "full": n * (n + 1) // 2}[kind]


def pasa_param_count(s: Spec) -> int:
    """The parameter count of pasa's `Model::new` for this spec, in closed form."""
    d, f, n, h = s.d, s.d_ff, s.n, s.heads
    per_block = 2 * d + 2 * (d * d + d) + 2 * d + (d * f + f) + (f * d + d)  # ln1 v o ln2 ff
    if s.content:
        per_block += 2 * (d * d + d)  # q, k
    if s.scores == "learned":
        per_block += h * n * n
    if s.scores == "factorised":
        per_block += 2 * h * n * s.rank
    per_block += kernel_len(s.u, n) + kernel_len(s.l, n)  # one kernel head each
    return (s.items + 1) * d + (n * d if s.pos_emb else 0) + s.blocks * per_block + 2 * d


class Consts:
    """Index tensors and tables shared by every call at one (n, dh) on one device."""

    def __init__(self, n: int, dh: int, device: torch.device):
        i = torch.arange(n, device=device).view(n, 1)
        j = torch.arange(n, device=device).view(1, n)
        self.n = n
        self.future = j > i  # the keys no query sees in a full window
        # U_ij = t[i − j] (the upper triangle is masked; |i − j| keeps the index in range).
        self.toeplitz = (i - j).abs()
        # L_ij = packed[i(i+1)/2 + j] for j ≤ i; the upper triangle meets p = 0.
        self.packed = torch.where(j <= i, i * (i + 1) // 2 + j, torch.zeros_like(i * j))
        # Rotary angles i·θ_c, θ_c = 10000^(−2c/dh), in f64 and rounded once (as pasa).
        c = torch.arange(dh // 2, dtype=torch.float64, device=device)
        ang = torch.arange(n, dtype=torch.float64, device=device).view(n, 1) * (
            10000.0 ** (-2.0 * c / dh)
        )
        self.cos = ang.cos().float()
        self.sin = ang.sin().float()

    def hidden(self, start: torch.Tensor | None) -> torch.Tensor:
        """Keys each query must not see: the future, and with padding the keys j < start
        (a padded query row keeps its own key so that its softmax is defined; its output is
        masked away after the block, as pasa's zero rows are)."""
        if start is None:
            return self.future
        n = self.n
        j = torch.arange(n, device=start.device).view(1, 1, 1, n)
        eye = torch.eye(n, dtype=torch.bool, device=start.device)
        return (self.future | (j < start.view(-1, 1, 1, 1))) & ~eye


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    b, h, n, dh = y.shape
    return y.transpose(1, 2).reshape(b, n, h * dh)


def rope(x: torch.Tensor, k: Consts, heads: int) -> torch.Tensor:
    """Rotate the pairs (2c, 2c+1) of each head by i·θ_c; an odd last element is kept."""
    b, n, d = x.shape
    dh = d // heads
    half = dh // 2
    xh = x.view(b, n, heads, dh)
    pairs = xh[..., : 2 * half].unflatten(-1, (half, 2))
    a, c = pairs[..., 0], pairs[..., 1]
    cos, sin = k.cos.view(1, n, 1, half), k.sin.view(1, n, 1, half)
    out = torch.stack((a * cos - c * sin, a * sin + c * cos), -1).flatten(-2)
    if dh % 2:
        out = torch.cat((out, xh[..., -1:]), -1)
    return out.reshape(b, n, d)


def attention_eager(k: Consts, heads, q, kk, v, pos, u, l, drop: float, start=None):
    """pasa's fused attention (`weight` reading) in plain ops. q, kk, v, y: [B, n, H·dh];
    pos: [H, n, n] or None; u: [kh, n] (Toeplitz) or None; l: [kh, n(n+1)/2] or None."""
    b, n, d = v.shape
    dh = d // heads
    scale = 1.0 / math.sqrt(dh)
    if pos is None:
        c = torch.matmul(split_heads(q, heads), split_heads(kk, heads).transpose(-1, -2)) * scale
    else:
        c = (pos * scale).unsqueeze(0)  # [1, H, n, n], the same for every window
    if u is not None:
        c = c * u[:, k.toeplitz].unsqueeze(0)  # U modulates the scaled scores
    p = torch.softmax(c.masked_fill(k.hidden(start), float("-inf")), dim=-1)
    if drop > 0:
        # One mask per window even where the scores are shared by the batch.
        p = F.dropout(p.expand(b, heads, n, n), drop, training=True)
    if l is not None:
        p = p * l[:, k.packed].unsqueeze(0)  # y_i = Σ_j p_ij L_ij v_j
    return merge_heads(torch.matmul(p, split_heads(v, heads)))


def attention_sdpa(heads, q, kk, v, drop: float):
    """Plain causal attention through SDPA: no U, no L."""
    y = F.scaled_dot_product_attention(
        split_heads(q, heads),
        split_heads(kk, heads),
        split_heads(v, heads),
        dropout_p=drop,
        is_causal=True,
    )
    return merge_heads(y)


def flex_block_mask(n: int, device):
    from torch.nn.attention.flex_attention import create_block_mask

    def causal(b, h, qi, kj):
        return qi >= kj

    return create_block_mask(causal, None, None, n, n, device=str(device))


_FLEX = None


def compiled_flex():
    """`torch.compile(flex_attention)`, made once (FlexAttention is meant to be compiled;
    uncompiled it is a slow reference). The head split stays outside the compiled region:
    Inductor's CPU lowering rejects it inside (torch 2.15)."""
    global _FLEX
    if _FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention

        _FLEX = torch.compile(flex_attention)
    return _FLEX


def attention_flex(heads, block_mask, q, kk, v, u):
    """FlexAttention: U (Toeplitz, shared by the heads) as `score_mod` on the scaled scores,
    causal block mask. No L, no dropout (FlexAttention has neither)."""
    score_mod = None
    if u is not None:
        t = u[0]

        def score_mod(score, b, h, qi, kj):
            return score * t[(qi - kj).abs()]

    y = compiled_flex()(
        split_heads(q, heads),
        split_heads(kk, heads),
        split_heads(v, heads),
        score_mod=score_mod,
        block_mask=block_mask,
    )
    return merge_heads(y)


class Block(nn.Module):
    def __init__(self, s: Spec):
        super().__init__()
        d, f, n, h = s.d, s.d_ff, s.n, s.heads
        self.ln1 = nn.LayerNorm(d, eps=LN_EPS)
        self.q = nn.Linear(d, d) if s.content else None
        self.k = nn.Linear(d, d) if s.content else None
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.P = nn.Parameter(torch.empty(h, n, n)) if s.scores == "learned" else None
        fact = s.scores == "factorised"
        self.PA = nn.Parameter(torch.empty(h, n, s.rank)) if fact else None
        self.PB = nn.Parameter(torch.empty(h, n, s.rank)) if fact else None
        self.U = nn.Parameter(torch.ones(1, kernel_len(s.u, n))) if s.u else None
        self.L = nn.Parameter(torch.ones(1, kernel_len(s.l, n))) if s.l else None
        self.ln2 = nn.LayerNorm(d, eps=LN_EPS)
        self.ff1 = nn.Linear(d, f)
        self.ff2 = nn.Linear(f, d)


class TorchModel(nn.Module):
    """pasa's `Model` (src/models.rs) in PyTorch; `forward` returns the training loss."""

    def __init__(self, s: Spec, device, attention: str = "eager"):
        super().__init__()
        if attention == "sdpa" and (s.u or s.l or not s.content):
            raise ValueError(f"{s.model} cannot use SDPA exactly (it has U, L or P)")
        self.spec = s
        self.attention = attention
        self.k = Consts(s.n, s.dh, torch.device(device))
        self.item_emb = nn.Parameter(torch.empty(s.items + 1, s.d))
        self.pos_emb = nn.Parameter(torch.empty(s.n, s.d)) if s.pos_emb else None
        self.blocks = nn.ModuleList(Block(s) for _ in range(s.blocks))
        self.ln_f = nn.LayerNorm(s.d, eps=LN_EPS)
        self.init_like_pasa()
        self.to(device)

    @torch.no_grad()
    def init_like_pasa(self):
        """DESIGN §1 "Initialisation" (the values do not matter for timing)."""
        s = self.spec
        self.item_emb.normal_(0.0, 1.0 / math.sqrt(s.d))
        self.item_emb[0].zero_()
        if self.pos_emb is not None:
            self.pos_emb.normal_(0.0, 0.1)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 1.0 / math.sqrt(m.in_features))
                m.bias.zero_()
        std = math.sqrt(0.01 / math.sqrt(s.rank))
        for blk in self.blocks:
            if blk.P is not None:
                blk.P.normal_(0.0, 0.01)
            if blk.PA is not None:
                blk.PA.normal_(0.0, std)
                blk.PB.normal_(0.0, std)

    def hidden(self, ids: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """LN_f of the last block's output, [B, n, d]."""
        s, k = self.spec, self.k
        drop = s.dropout if self.training else 0.0
        keep = None
        if start is not None:  # pasa's row_mask: padded slots hold 0 after each stage
            keep = (torch.arange(s.n, device=ids.device).view(1, -1, 1)
                    >= start.view(-1, 1, 1)).to(self.item_emb.dtype)
        x = F.embedding(ids, self.item_emb) * math.sqrt(s.d)
        if self.pos_emb is not None:
            x = x + self.pos_emb
        x = F.dropout(x, drop, self.training)
        if keep is not None:
            x = x * keep
        for blk in self.blocks:
            h = blk.ln1(x)
            q = blk.q(h) if blk.q is not None else None
            kk = blk.k(h) if blk.k is not None else None
            v = blk.v(h)
            if s.scores == "rope":
                q, kk = rope(q, k, s.heads), rope(kk, k, s.heads)
            pos = blk.P
            if blk.PA is not None:
                pos = torch.matmul(blk.PA, blk.PB.transpose(-1, -2))
            if self.attention == "sdpa":
                y = attention_sdpa(s.heads, q, kk, v, drop)
            else:
                y = attention_eager(k, s.heads, q, kk, v, pos, blk.U, blk.L, drop, start)
            x = x + F.dropout(blk.o(y), drop, self.training)
            f = F.dropout(F.relu(blk.ff1(blk.ln2(x))), drop, self.training)
            x = x + F.dropout(blk.ff2(f), drop, self.training)
            if keep is not None:
                x = x * keep
        return self.ln_f(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of items 1..items (tied output; column 0, padding, is never a class)."""
        return torch.matmul(h, self.item_emb[1:].t())

    def forward(self, ids, targets, start=None):
        h = self.hidden(ids, start)
        logits = self.logits(h.reshape(-1, self.spec.d))
        # Mean over the slots with a target (target 0 → index −1, ignored), as pasa's CE.
        return F.cross_entropy(logits, targets.reshape(-1) - 1, ignore_index=-1)

    def pasa_named(self) -> dict[str, tuple[torch.Tensor, bool]]:
        """Every parameter under pasa's name, with whether it is stored transposed there
        (linear weights: pasa [in, out], torch [out, in])."""
        out = {"item_emb": (self.item_emb, False)}
        if self.pos_emb is not None:
            out["pos_emb"] = (self.pos_emb, False)
        for i, blk in enumerate(self.blocks):
            for name in ("ln1", "ln2"):
                ln = getattr(blk, name)
                out[f"block{i}.{name}.g"] = (ln.weight, False)
                out[f"block{i}.{name}.b"] = (ln.bias, False)
            for name in ("q", "k", "v", "o", "ff1", "ff2"):
                lin = getattr(blk, name)
                if lin is not None:
                    out[f"block{i}.{name}.w"] = (lin.weight, True)
                    out[f"block{i}.{name}.b"] = (lin.bias, False)
            for name in ("P", "PA", "PB", "U", "L"):
                p = getattr(blk, name)
                if p is not None:
                    out[f"block{i}.{name}"] = (p, False)
        out["ln_f.g"] = (self.ln_f.weight, False)
        out["ln_f.b"] = (self.ln_f.bias, False)
        return out

    @torch.no_grad()
    def load_pasa(self, tensors: dict[str, torch.Tensor]):
        named = self.pasa_named()
        if set(named) != set(tensors):
            raise ValueError(f"names differ: {sorted(set(named) ^ set(tensors))}")
        for name, (p, transposed) in named.items():
            p.copy_(tensors[name].t() if transposed else tensors[name])


# ----------------------------------------------------------------------------------------
# Timing


def synchronizer(device: torch.device):
    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def timed(fn, warmup: int, iters: int, sync) -> dict:
    """`pasa bench`'s `time`: warm-up calls, then each timed call followed by a sync."""
    for _ in range(warmup):
        fn()
    sync()
    ms = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        ms.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms)}


def short_error(e: BaseException) -> str:
    lines = [x for x in str(e).strip().splitlines() if x.strip()]
    msg = f"{type(e).__name__}: {lines[0] if lines else ''}"
    return msg if len(msg) <= 160 else msg[:157] + "..."


def applicable(peer: str, case: str, s: Spec, device: torch.device) -> tuple[bool, str]:
    """Whether `peer` runs `case` for this model, and what it leaves out."""
    if peer in ("eager", "compile"):
        return True, ""
    if peer == "flex":
        if case == "train_step":
            return False, "attention cases only"
        if not s.content:
            return False, "positional scores: no q·k to modify"
        if device.type == "cpu" and case == "attention_bwd":
            return False, "FlexAttention has no backward on the CPU"
        note = "U only (no L), no dropout" if s.u else "no dropout"
        if device.type == "cpu":
            note += ", inputs without grad (no backward on the CPU)"
        return True, note
    # sdpa
    if not s.content:
        return False, "positional scores"
    if case == "train_step":
        if s.u or s.l:
            return False, "would drop U and L"
        return True, ""
    return True, "no U, no L" if (s.u or s.l) else ""


class AttnInputs:
    """`AttnCase::new`: standard-normal q, k, v (or P), U, L and dy; full windows."""

    def __init__(self, s: Spec, batch: int, device, grad: bool):
        g = torch.Generator().manual_seed(SEED)

        def normal(*shape):
            return torch.randn(*shape, generator=g).to(device).requires_grad_(grad)

        act = (batch, s.n, s.d)
        self.q = normal(*act) if s.content else None
        self.k = normal(*act) if s.content else None
        self.v = normal(*act)
        self.pos = None if s.content else normal(s.heads, s.n, s.n)
        self.u = normal(1, kernel_len(s.u, s.n)) if s.u else None
        self.l = normal(1, kernel_len(s.l, s.n)) if s.l else None
        self.dy = torch.randn(*act, generator=g).to(device)

    def leaves(self, skip=()):
        return [t for name, t in vars(self).items()
                if name != "dy" and name not in skip and t is not None]


def attention_fn(peer: str, s: Spec, device, consts: Consts):
    """The attention call of `peer` as f(inputs) → y."""
    drop = s.dropout
    if peer in ("eager", "compile"):
        call = torch.compile(attention_eager) if peer == "compile" else attention_eager
        return lambda x: call(consts, s.heads, x.q, x.k, x.v, x.pos, x.u, x.l, drop)
    if peer == "sdpa":
        return lambda x: attention_sdpa(s.heads, x.q, x.k, x.v, drop)
    mask = flex_block_mask(s.n, device)
    return lambda x: attention_flex(s.heads, mask, x.q, x.k, x.v, x.u)


def time_attention(peer, s: Spec, batch, device, warmup, iters, backward=True):
    """Both attention cases of one peer (the forward alone when not `backward`):
    {case: timing or error}. A FlexAttention that cannot differentiate U (a captured
    tensor) is timed again with U fixed, and says so."""
    try:
        return _time_attention(peer, s, batch, device, warmup, iters, backward, u_grad=True)
    except Exception as e:  # a peer that fails is reported, not fatal
        first = short_error(e)
    if peer == "flex" and s.u and backward:
        try:
            out = _time_attention(peer, s, batch, device, warmup, iters, backward, u_grad=False)
            for r in out.values():
                r["note"] = f"U without gradient (with it: {first[:80]})"
            return out
        except Exception as e:
            first = short_error(e)
    return {c: {"error": first} for c in ("attention_fwd", "attention_bwd")}


def _time_attention(peer, s: Spec, batch, device, warmup, iters, backward, u_grad):
    sync = synchronizer(device)
    x = AttnInputs(s, batch, device, grad=backward)
    if not u_grad and x.u is not None:
        x.u = x.u.detach()
    f = attention_fn(peer, s, device, Consts(s.n, s.dh, device))
    out = {"attention_fwd": timed(lambda: f(x), warmup, iters, sync)}
    if backward:
        # Every input the call uses (SDPA ignores U and L, FlexAttention L) that needs one.
        skip = {"flex": ("l",), "sdpa": ("u", "l")}.get(peer, ())
        leaves = [t for t in x.leaves(skip) if t.requires_grad]
        y = f(x)
        out["attention_bwd"] = timed(
            lambda: torch.autograd.grad(y, leaves, x.dy, retain_graph=True), warmup, iters, sync)
    return out


def make_optimizer(model: nn.Module):
    kw = dict(lr=1e-3, betas=(0.9, 0.98), eps=1e-8)
    try:
        return torch.optim.Adam(model.parameters(), fused=True, **kw), "fused"
    except (RuntimeError, ValueError):
        return torch.optim.Adam(model.parameters(), **kw), "foreach"


def random_batch(s: Spec, batch: int, device):
    """`cases::random_batch`: full windows, uniform items 1..=items and targets."""
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(1, s.items + 1, (batch, s.n), generator=g)
    targets = torch.randint(1, s.items + 1, (batch, s.n), generator=g)
    return ids.to(device), targets.to(device)


def time_train(peer, s: Spec, batch, device, warmup, iters) -> dict:
    sync = synchronizer(device)
    try:
        torch.manual_seed(SEED)
        model = TorchModel(s, device, attention="sdpa" if peer == "sdpa" else "eager").train()
        opt, kind = make_optimizer(model)
        loss_fn = torch.compile(model) if peer == "compile" else model
        ids, targets = random_batch(s, batch, device)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(ids, targets)
            loss.backward()
            opt.step()

        t = timed(step, warmup, iters, sync)
        t["adam"] = kind
        return t
    except Exception as e:
        return {"error": short_error(e)}


def run_torch(models, shape, peers, device, warmup, iters, log) -> dict:
    """{(case, model): {peer: timing | error | n/a}} plus parameter counts."""
    rows, params = {}, {}
    for m in models:
        s = spec_of(m, shape)
        params[m] = {
            "torch": sum(p.numel() for p in TorchModel(s, "cpu").parameters()),
            "pasa_layout": pasa_param_count(s),
        }
        for case in CASES:
            rows[(case, m)] = {}
        for peer in peers:
            ok = {c: applicable(peer, c, s, device) for c in CASES}
            torch._dynamo.reset()
            attn = {}
            if ok["attention_fwd"][0]:
                log(f"  {m}: {peer} attention")
                attn = time_attention(peer, s, shape["batch"], device, warmup, iters,
                                      backward=ok["attention_bwd"][0])
            train = None
            if ok["train_step"][0]:
                log(f"  {m}: {peer} train step")
                train = time_train(peer, s, shape["batch"], device, warmup, iters)
            for case in CASES:
                run_ok, note = ok[case]
                if not run_ok:
                    r = {"na": note}
                else:
                    r = dict(train if case == "train_step" else attn[case])
                    if note:
                        r["note"] = (note + "; " + r["note"]) if "note" in r else note
                rows[(case, m)][peer] = r
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"rows": rows, "params": params}


def spec_of(model: str, shape: dict) -> Spec:
    return Spec(model, shape["items"], shape["n"], shape["d"], shape["blocks"],
                shape["heads"], d_ff=shape["d"])


# ----------------------------------------------------------------------------------------
# pasa


def pasa_bin(arg: str | None) -> Path:
    p = Path(arg or os.environ.get("PASA_BIN") or REPO / "target" / "release" / "pasa")
    if not p.exists():
        sys.exit(f"error: no pasa binary at {p} (build it: cargo build --release; or --pasa)")
    return p


def run_pasa_bench(binary: Path, models, shape, device: str, warmup, iters, threads) -> dict:
    cmd = [str(binary), "bench", "--json", "--device", device, "--model", ",".join(models)]
    for key in ("batch", "n", "d", "blocks", "heads", "items"):
        cmd += [f"--{key}", str(shape[key])]
    cmd += ["--warmup", str(warmup), "--iters", str(iters)]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr.strip()}")
    out = json.loads(r.stdout)
    out["command"] = f"RAYON_NUM_THREADS={threads} " + " ".join(cmd)
    return out


# ----------------------------------------------------------------------------------------
# Report


def fmt_cell(r: dict | None) -> str:
    if r is None:
        return ""
    if "na" in r:
        return "—"
    if "error" in r:
        return "error"
    ms = r["median_ms"]
    txt = f"{ms:.3f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"
    if r.get("ratio") is not None:
        txt += f" ({r['ratio']:.2f}×)"
    return txt + (" *" if r.get("note") else "")


def table(result: dict) -> str:
    peers = result["peers"]
    head = ["case", "model", "pasa ms"] + [f"{p} ms (×pasa)" for p in peers]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---", "---"] + ["---:"] * (1 + len(peers))) + "|"]
    notes = []
    for row in result["rows"]:
        pasa = row["pasa_ms"]
        cells = [row["case"], row["model"], "—" if pasa is None else f"{pasa:.3f}"]
        for p in peers:
            r = row["peers"].get(p)
            cells.append(fmt_cell(r))
            if r and ("note" in r or "error" in r):
                why = r.get("error") or r["note"]
                notes.append(f"{row['case']} {row['model']} {p}: {why}")
        lines.append("| " + " | ".join(cells) + " |")
    out = "\n".join(lines)
    if notes:
        out += "\n\n" + "\n".join(f"* {x}" for x in notes)
    return out


def default_threads() -> int:
    env = os.environ.get("RAYON_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def bench(a) -> int:
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch sees no GPU")
    torch.set_num_threads(a.threads)
    shape = {k: getattr(a, k) for k in ("batch", "n", "d", "blocks", "heads", "items")}
    peers = a.peers or (["eager", "compile", "flex", "sdpa"] if device.type == "cuda"
                        else ["eager", "compile"])
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if not a.quiet else (lambda m: None)

    if a.pasa_json:
        pasa = json.loads(Path(a.pasa_json).read_text())
        pasa["command"] = f"read from {a.pasa_json}"
        theirs = {k: pasa.get("shape", {}).get(k) for k in shape}
        theirs.update(warmup=pasa.get("warmup"), iters=pasa.get("iters"))
        ours = dict(shape, warmup=a.warmup, iters=a.iters)
        mismatch = [f"{k} {theirs[k]} ≠ {ours[k]}" for k in ours if theirs[k] != ours[k]]
        if mismatch:
            log(f"warning: {a.pasa_json} was measured otherwise: {', '.join(mismatch)}")
    elif a.skip_pasa:
        pasa = {"device": None, "command": "not run (--skip-pasa)", "results": []}
    else:
        binary = pasa_bin(a.pasa)
        log(f"pasa bench on {a.device} ...")
        pasa = run_pasa_bench(binary, a.model, shape, a.device, a.warmup, a.iters, a.threads)
    pasa_ms = {(r["case"], r["model"]): r["median_ms"] for r in pasa["results"]}

    log(f"torch {torch.__version__} on {a.device} ({a.threads} threads), peers {peers} ...")
    t = run_torch(a.model, shape, peers, device, a.warmup, a.iters, log)
    rows = []
    for m in a.model:
        for case in CASES:
            base = pasa_ms.get((case, m))
            cell = t["rows"][(case, m)]
            for r in cell.values():
                if "median_ms" in r and base:
                    r["ratio"] = r["median_ms"] / base
            rows.append({"case": case, "model": m, "pasa_ms": base, "peers": cell})
    torch_device = (torch.cuda.get_device_name(device) if device.type == "cuda"
                    else f"cpu ({torch.get_num_threads()} threads)")
    result = {
        "shape": shape,
        "warmup": a.warmup,
        "iters": a.iters,
        "threads": a.threads,
        "pasa": {"device": pasa.get("device"), "command": pasa["command"],
                 "results": pasa["results"]},
        "torch": {"version": torch.__version__, "device": torch_device},
        "peers": peers,
        "params": t["params"],
        "rows": rows,
    }
    s = shape
    print(f"shape: batch {s['batch']}, n {s['n']}, d {s['d']}, blocks {s['blocks']}, "
          f"heads {s['heads']}, items {s['items']}; {a.warmup} warm-up + {a.iters} timed calls")
    print(f"pasa: {pasa.get('device')}  ({pasa['command']})")
    print(f"torch {torch.__version__}: {torch_device}")
    for m, c in t["params"].items():
        same = "=" if c["torch"] == c["pasa_layout"] else "≠"
        print(f"parameters {m}: torch {c['torch']} {same} pasa's layout {c['pasa_layout']}")
    print()
    print(table(result))
    print("\nratio = peer median / pasa median (> 1: pasa is faster)")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    bad = [m for m, c in t["params"].items() if c["torch"] != c["pasa_layout"]]
    return 1 if bad else 0


# ----------------------------------------------------------------------------------------
# --check


def reference_attention(q, kk, v, pos, u, l, heads, start):
    """DESIGN §1 literally, one (b, h, i) at a time, in f64: padded rows output 0."""
    b, n, d = v.shape
    dh = d // heads
    y = torch.zeros(b, n, d, dtype=torch.float64)
    for bi in range(b):
        for h in range(heads):
            cols = slice(h * dh, (h + 1) * dh)
            for i in range(n):
                if i < start[bi]:
                    continue
                js = range(int(start[bi]), i + 1)
                if pos is None:
                    c = [torch.dot(q[bi, i, cols], kk[bi, j, cols]) / math.sqrt(dh) for j in js]
                else:
                    c = [pos[h, i, j] / math.sqrt(dh) for j in js]
                if u is not None:
                    c = [cj * u[0, i - j] for cj, j in zip(c, js)]
                p = torch.softmax(torch.stack(c), 0)
                out = 0
                for pj, j in zip(p, js):
                    w = pj * (l[0, i * (i + 1) // 2 + j] if l is not None else 1.0)
                    out = out + w * v[bi, j, cols]
                y[bi, i, cols] = out
    return y


def check_close(name, got, want, atol=1e-5, rtol=1e-4) -> bool:
    got, want = got.double(), want.double()
    ok = torch.allclose(got, want, atol=atol, rtol=rtol)
    err = (got - want).abs().max().item() if got.numel() else 0.0
    print(f"  {'ok  ' if ok else 'FAIL'} {name} (max |diff| {err:.2e})")
    return ok


def check_attention() -> bool:
    """The eager attention against the loop reference, forward and every gradient, with
    Toeplitz U, full L, padding and per-window positional scores."""
    ok = True
    torch.manual_seed(0)
    b, n, heads, dh = 3, 6, 2, 3
    d = heads * dh
    start = torch.tensor([0, 2, 5])
    consts = Consts(n, dh, torch.device("cpu"))
    for scores in ("content", "positional"):
        leaves = {
            "q": torch.randn(b, n, d) if scores == "content" else None,
            "k": torch.randn(b, n, d) if scores == "content" else None,
            "v": torch.randn(b, n, d),
            "pos": torch.randn(heads, n, n) if scores == "positional" else None,
            "u": torch.randn(1, n),
            "l": torch.randn(1, n * (n + 1) // 2),
        }
        leaves = {k: (t.double().requires_grad_() if t is not None else None)
                  for k, t in leaves.items()}
        names = [k for k, t in leaves.items() if t is not None]
        args = [leaves[k] for k in ("q", "k", "v", "pos", "u", "l")]
        valid = (torch.arange(n).view(1, n, 1) >= start.view(b, 1, 1)).double()
        got = attention_eager(consts, heads, *args, 0.0, start) * valid
        want = reference_attention(*args, heads, start)
        ok &= check_close(f"{scores} attention, U and L, padding: forward", got, want)
        dy = torch.randn(b, n, d, dtype=torch.float64)
        g1 = torch.autograd.grad(got, [leaves[k] for k in names], dy)
        g2 = torch.autograd.grad(want, [leaves[k] for k in names], dy)
        for k, x1, x2 in zip(names, g1, g2):
            ok &= check_close(f"{scores} attention: d{k}", x1, x2)
    return ok


def check_peers(device) -> bool:
    """U ≡ 1, L ≡ 1 equals SDPA; Toeplitz U through FlexAttention equals the eager path."""
    ok = True
    torch.manual_seed(1)
    b, n, heads, dh = 2, 24, 2, 16
    d = heads * dh
    consts = Consts(n, dh, device)
    q, kk, v = (torch.randn(b, n, d, device=device) for _ in range(3))
    ones_u, ones_l = torch.ones(1, n, device=device), torch.ones(1, n * (n + 1) // 2,
                                                                  device=device)
    eager = attention_eager(consts, heads, q, kk, v, None, ones_u, ones_l, 0.0)
    ok &= check_close("U ≡ 1, L ≡ 1 equals SDPA (causal)", eager,
                      attention_sdpa(heads, q, kk, v, 0.0))
    u = 1 + 0.5 * torch.randn(1, n, device=device)
    # FlexAttention has a backward on the GPU only: there, compare the gradients too.
    grad = device.type == "cuda"
    leaves = [t.requires_grad_(grad) for t in (q, kk, v, u)]
    eager = attention_eager(consts, heads, q, kk, v, None, u, None, 0.0)
    try:
        flex = attention_flex(heads, flex_block_mask(n, device), q, kk, v, u)
        ok &= check_close("Toeplitz U as FlexAttention score_mod equals eager", flex, eager)
        if grad:
            dy = torch.randn_like(eager)
            g_flex = torch.autograd.grad(flex, leaves, dy)
            g_eager = torch.autograd.grad(eager, leaves, dy)
            for name, a, b_ in zip(("dq", "dk", "dv", "dU"), g_flex, g_eager):
                ok &= check_close(f"FlexAttention {name} equals eager", a, b_, atol=1e-4)
    except Exception as e:
        print(f"  skip FlexAttention on {device.type}: {short_error(e)}")
    # One dropout mask per window where the scores are shared (positional models).
    p = F.dropout(torch.ones(1, 4, 4).expand(8, 4, 4), 0.5, training=True)
    good = not all(torch.equal(p[0], p[i]) for i in range(1, 8))
    ok &= good
    print(f"  {'ok  ' if good else 'FAIL'} dropout on shared scores draws one mask per window")
    return ok


def check_pieces() -> bool:
    """rope against its formula; the loss against lse − logit over items 1..; padding."""
    ok = True
    torch.manual_seed(2)
    n, heads, dh = 5, 2, 5  # odd dh: the last element is kept
    consts = Consts(n, dh, torch.device("cpu"))
    x = torch.randn(2, n, heads * dh)
    want = x.clone()
    for i in range(n):
        for h in range(heads):
            for c in range(dh // 2):
                ang = i * 10000.0 ** (-2.0 * c / dh)
                a, bb = x[:, i, h * dh + 2 * c], x[:, i, h * dh + 2 * c + 1]
                want[:, i, h * dh + 2 * c] = a * math.cos(ang) - bb * math.sin(ang)
                want[:, i, h * dh + 2 * c + 1] = a * math.sin(ang) + bb * math.cos(ang)
    ok &= check_close("rope equals its formula", rope(x, consts, heads), want)

    s = Spec("pasa", items=11, n=6, d=8, blocks=2, heads=2, d_ff=8)
    model = TorchModel(s, "cpu").eval()
    with torch.no_grad():
        for blk in model.blocks:
            blk.U.normal_(1.0, 0.3)
            blk.L.normal_(1.0, 0.3)
    ids = torch.randint(1, 12, (3, 6))
    targets = torch.randint(0, 12, (3, 6))
    start = torch.tensor([0, 3, 5])
    ids = ids * (torch.arange(6).view(1, 6) >= start.view(3, 1))
    with torch.no_grad():
        h = model.hidden(ids, start)
        full = h.reshape(-1, 8) @ model.item_emb.t()
        lse = torch.logsumexp(full[:, 1:], 1)
        t = targets.reshape(-1)
        per = lse - full.gather(1, t.view(-1, 1)).squeeze(1)
        want = per[t != 0].mean()
        ok &= check_close("loss = mean over targets of lse(items 1..) − logit",
                          model(ids, targets, start), want)
        other = ids.clone()
        other[1, :3] = 7  # different items in padded slots
        h2 = model.hidden(other, start)
        valid = (torch.arange(6).view(1, 6) >= start.view(3, 1)).unsqueeze(-1)
        ok &= check_close("padded slots do not reach valid rows", h * valid, h2 * valid)
    for m in MODELS:
        sm = Spec(m, items=50, n=7, d=12, blocks=2, heads=3, d_ff=12, rank=4)
        got = sum(p.numel() for p in TorchModel(sm, "cpu").parameters())
        want = pasa_param_count(sm)
        good = got == want
        ok &= good
        print(f"  {'ok  ' if good else 'FAIL'} {m}: {got} parameters, pasa's layout {want}")
    return ok


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + size
    out = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {t['dtype']}")
        lo, hi = t["data_offsets"]
        out[name] = torch.frombuffer(bytearray(raw[base + lo:base + hi]),
                                     dtype=torch.float32).reshape(t["shape"])
    return out, meta


def torch_metrics(model: TorchModel, seqs: list[list[int]], n: int) -> dict[str, float]:
    """pasa eval's test split under the full protocol: input s[..L−1] (last n, left-padded),
    target s[L−1]; rank = candidates 1..items (other than the target) scoring ≥ it."""
    ks = (1, 5, 10, 20, 50)
    sums = {f"{m}@{k}": 0.0 for m in ("HR", "NDCG", "MRR") for k in ks}
    users = [s for s in seqs if len(s) >= 3]
    for s in users:
        inp, target = s[:-1][-n:], s[-1]
        start = n - len(inp)
        ids = torch.tensor([[0] * start + inp])
        with torch.no_grad():
            h = model.hidden(ids, torch.tensor([start]))[0, -1]
            scores = model.logits(h)  # items 1..
        st = scores[target - 1]
        r = int((scores >= st).sum().item()) - 1
        for k in ks:
            if r < k:
                sums[f"HR@{k}"] += 1
                sums[f"NDCG@{k}"] += 1 / math.log2(r + 2)
                sums[f"MRR@{k}"] += 1 / (r + 1)
    return {k: v / len(users) for k, v in sums.items()}


def check_against_pasa(binary: Path) -> bool:
    """Train each model for a few steps in pasa on a small file, then (1) the checkpoint's
    names and shapes are the torch model's and (2) `pasa eval`'s metrics come out the same
    from the torch model loaded with that checkpoint."""
    ok = True
    rnd = random.Random(5)
    items, n = 40, 10
    seqs = [rnd.sample(range(1, items + 1), items)]  # every item appears: ids kept
    seqs += [[rnd.randint(1, items) for _ in range(rnd.randint(4, 18))] for _ in range(30)]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "seqs.txt"
        data.write_text("".join(f"{u + 1} {' '.join(map(str, s))}\n" for u, s in enumerate(seqs)))
        for m in MODELS:
            out = Path(tmp) / m
            cmd = [str(binary), "train", "--data", str(data), "--format", "lines", "--model", m,
                   "--n", str(n), "--d", "16", "--blocks", "2", "--heads", "2", "--rank", "4",
                   "--epochs", "6", "--batch", "8", "--lr", "0.05", "--device", "cpu",
                   "--out", str(out)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"  FAIL {m}: pasa train failed:\n{r.stderr.strip()[-2000:]}")
                ok = False
                continue
            ckpt = out / "last.safetensors"  # after every step, U and L far from 1
            tensors, meta = read_safetensors(ckpt)
            tensors = {k: t for k, t in tensors.items() if not k.startswith("adam.")}
            cfg = json.loads(meta["pasa"])["config"]["model"]
            s = Spec(m, cfg["items"], cfg["n"], cfg["d"], cfg["blocks"], cfg["heads"],
                     cfg["d_ff"], cfg["dropout"], cfg["rank"])
            model = TorchModel(s, "cpu").eval()
            named = model.pasa_named()
            shapes = {k: list(p.t().shape if tr else p.shape) for k, (p, tr) in named.items()}
            theirs = {k: list(t.shape) for k, t in tensors.items()}
            same = shapes == theirs
            ok &= same
            print(f"  {'ok  ' if same else 'FAIL'} {m}: parameter names and shapes equal "
                  f"pasa's checkpoint ({sum(t.numel() for t in tensors.values())} values)")
            if not same:
                print(f"       torch {shapes}\n       pasa  {theirs}")
                continue
            model.load_pasa(tensors)
            r = subprocess.run([str(binary), "eval", str(ckpt), "--json", "--device", "cpu"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(f"  FAIL {m}: pasa eval failed:\n{r.stderr.strip()[-2000:]}")
                ok = False
                continue
            theirs = json.loads(r.stdout)["metrics"][0]
            mine = torch_metrics(model, seqs, s.n)
            diff = max(abs(mine[k] - theirs[k]) for k in mine)
            good = diff < 1e-6
            ok &= good
            moved = ""
            if s.u:
                moved = (f", |U − 1| up to {(tensors['block0.U'] - 1).abs().max():.2f}, "
                         f"|L − 1| up to {(tensors['block0.L'] - 1).abs().max():.2f}")
            print(f"  {'ok  ' if good else 'FAIL'} {m}: pasa eval metrics recomputed by torch "
                  f"from pasa's parameters (max |diff| {diff:.1e}, {theirs['users']} users, "
                  f"MRR@50 {theirs['MRR@50']:.4f}{moved})")
    return ok


def check(a) -> int:
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    print("the eager attention against DESIGN §1 written as loops (f64):")
    ok = check_attention()
    print(f"peers on {device.type}:")
    ok &= check_peers(device)
    print("rope, loss, padding, parameter counts:")
    ok &= check_pieces()
    binary = Path(a.pasa or os.environ.get("PASA_BIN") or REPO / "target" / "release" / "pasa")
    if binary.exists():
        print(f"against pasa ({binary}):")
        ok &= check_against_pasa(binary)
    else:
        print(f"skip the comparison with pasa: no binary at {binary}")
    print("check passed" if ok else "check FAILED")
    return 0 if ok else 1


# ----------------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(
        description="Time PyTorch peers of every `pasa bench` case beside pasa itself.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"],
                   default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", nargs="+", default=None, type=_models,
                   help="models, space- or comma-separated (default: sasrec pasa)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--items", type=int, default=3416)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--threads", type=int, default=default_threads(),
                   help="torch threads, and RAYON_NUM_THREADS for pasa "
                        "(default: RAYON_NUM_THREADS, else the CPUs this process may use)")
    p.add_argument("--peers", nargs="+", type=_peers, default=None,
                   help="peers to time (default: eager compile on cpu, all four on cuda)")
    p.add_argument("--pasa", help="pasa binary (default: $PASA_BIN, else target/release/pasa)")
    p.add_argument("--skip-pasa", action="store_true",
                   help="do not run pasa bench (compare against --pasa-json when given)")
    p.add_argument("--pasa-json", metavar="FILE",
                   help="compare against this `pasa bench --json` output instead of running it")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--check", action="store_true",
                   help="validate the PyTorch model (and against pasa) instead of timing")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    a = p.parse_args()
    # argparse does not pass a default through `type`: flatten only what was given.
    a.model = [m for ms in a.model for m in ms] if a.model else ["sasrec", "pasa"]
    if a.peers:
        a.peers = [x for xs in a.peers for x in xs]
    for key in ("batch", "n", "d", "blocks", "heads", "items", "iters", "threads"):
        if getattr(a, key) < 1:
            p.error(f"--{key} must be at least 1")
    if a.d % a.heads:
        p.error(f"--heads {a.heads} does not divide --d {a.d}")
    return check(a) if a.check else bench(a)


def _models(text: str) -> list[str]:
    ms = [m for m in text.split(",") if m]
    for m in ms:
        if m not in MODELS:
            raise argparse.ArgumentTypeError(f"unknown model {m!r} ({', '.join(MODELS)})")
    return ms


def _peers(text: str) -> list[str]:
    ps = [x for x in text.split(",") if x]
    for x in ps:
        if x not in PEERS:
            raise argparse.ArgumentTypeError(f"unknown peer {x!r} ({', '.join(PEERS)})")
    return ps


if __name__ == "__main__":
    sys.exit(main())
