"""Fused Triton forward kernels of the chunked neural memory (linear and depth-2 MLP).

One program per (batch, head) — and, for the linear memory, per block of BV output rows, which
evolve independently — walks the chunks in order. The linear memory holds W and S in float32
registers and, when SAVE is set, writes the state at every chunk start to a [B*H, NC, ...]
buffer; the MLP memory keeps its state in such slot buffers throughout (see mlp_fwd_kernel).
Each chunk is evaluated in the dual form (see triton_dual.py); the backward recomputes chunk by
chunk from the saved chunk-start states.
Tensors are contiguous: q, k, v, y [B, T, H, D]; gates [B, T, H]; states [B*H, out, in].
"""

from __future__ import annotations

import triton
import triton.language as tl

from titans_dna.ops.memory.triton_dual import (
    act_fwd,
    act_grad,
    chunk_gates,
    copy_state,
    curvature_norm,
    dual_layer_fwd,
    dual_layer_out,
    dual_layer_step,
    load_state,
    mm,
)


@triton.jit
def load_rows(ptr, i_b, i_h, t, cols, T, H, D, mask):
    """Rows t of one head of a [B, T, H, D] tensor as a float32 [len(t), len(cols)] tile."""
    off = ((i_b * T + t).to(tl.int64) * H + i_h) * D
    return tl.load(ptr + off[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def store_rows(ptr, val, i_b, i_h, t, cols, T, H, D, mask):
    """Write a [len(t), len(cols)] tile to rows t of one head of a [B, T, H, D] tensor."""
    off = ((i_b * T + t).to(tl.int64) * H + i_h) * D
    tl.store(ptr + off[:, None] + cols[None, :], val.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def load_gates(th_ptr, la_ptr, ln_ptr, i_b, i_h, t, T, H):
    """θ, log(1-α), log η of tokens t; zero past T (rows past the last token are never read)."""
    off = (i_b * T + t).to(tl.int64) * H + i_h
    mt = t < T
    th = tl.load(th_ptr + off, mask=mt, other=0.0).to(tl.float32)
    la = tl.load(la_ptr + off, mask=mt, other=0.0).to(tl.float32)
    ln = tl.load(ln_ptr + off, mask=mt, other=0.0).to(tl.float32)
    return th, la, ln


@triton.jit
def surprise_scale(sq_norm, tau, CLIP: tl.constexpr):
    """Clip factor min(1, τ / ‖u‖) = τ rsqrt(max(‖u‖², τ²)) from ‖u‖² (1 when not CLIP)."""
    if CLIP:
        return tau * tl.math.rsqrt(tl.maximum(sq_norm, tau * tau))
    else:
        return tl.full(sq_norm.shape, 1.0, tl.float32)


@triton.jit
def curvature_weights(g, scale, BT: tl.constexpr):
    """s_i D_{t,i} [BT, BT] of the normalized update from G = θ D and the clip factors c
    (s = 2θc)."""
    return g * (2.0 * scale)[None, :]


@triton.jit
def linear_fwd_kernel(
    q, k, v, th, la, ln, w0, s0, y, w_end, s_end, w_chk, s_chk,
    T, H, NC, tau,
    D: tl.constexpr, BD: tl.constexpr, BV: tl.constexpr, BT: tl.constexpr,
    CLIP: tl.constexpr, NORM: tl.constexpr, SAVE: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Linear memory M(x) = W x; grid (B*H, D / BV). CLIP needs BV ≥ D (row norms of e); NORM:
    the normalized update (its damping depends on keys and gates only, so row blocks agree)."""
    i_bh = tl.program_id(0)
    i_v = tl.program_id(1)
    i_b = i_bh // H
    i_h = i_bh % H
    rt = tl.arange(0, BT)
    rd = tl.arange(0, BD)
    rv = i_v * BV + tl.arange(0, BV)
    md = rd < D
    mv = rv < D
    st_off = rv[:, None] * D + rd[None, :]
    st_mask = mv[:, None] & md[None, :]
    base = i_bh.to(tl.int64) * D * D
    w = tl.load(w0 + base + st_off, mask=st_mask, other=0.0)
    s = tl.load(s0 + base + st_off, mask=st_mask, other=0.0)
    for c in range(NC):
        if SAVE:
            chk = (i_bh.to(tl.int64) * NC + c) * D * D
            tl.store(w_chk + chk + st_off, w, mask=st_mask)
            tl.store(s_chk + chk + st_off, s, mask=st_mask)
        t = c * BT + rt
        mt = t < T
        xq = load_rows(q, i_b, i_h, t, rd, T, H, D, mt[:, None] & md[None, :])
        xk = load_rows(k, i_b, i_h, t, rd, T, H, D, mt[:, None] & md[None, :])
        xv = load_rows(v, i_b, i_h, t, rv, T, H, D, mt[:, None] & mv[None, :])
        gt, gl, gn = load_gates(th, la, ln, i_b, i_h, t, T, H)
        last = tl.minimum(T - c * BT, BT) - 1
        g, _gp, _la, _ln, beta, gamma, h, _en, rho = chunk_gates(gt, gl, gn, last, BT)
        e = 2.0 * (mm(xk, tl.trans(w), PREC) - xv)
        sq = tl.sum(e * e, axis=1) * tl.sum(xk * xk, axis=1)
        scale = surprise_scale(sq, tau, CLIP)
        e = e * scale[:, None]
        n = tl.full((BT,), 1.0, tl.float32)
        if NORM:
            n = 1.0 / (1.0 + curvature_norm(curvature_weights(g, scale, BT), xk))
        out, w, s = dual_layer_fwd(xq, xk, e, w, s, g, beta, gamma, h, rho, n, last, BT, PREC)
        y_off = ((i_b * T + t).to(tl.int64) * H + i_h) * D
        tl.store(
            y + y_off[:, None] + rv[None, :],
            out.to(y.dtype.element_ty),
            mask=mt[:, None] & mv[None, :],
        )
    tl.store(w_end + base + st_off, w, mask=st_mask)
    tl.store(s_end + base + st_off, s, mask=st_mask)


@triton.jit
def mlp_errors(xk, xv, w1_ptr, w2_ptr, off, rd, rf, D, F, tau, RES: tl.constexpr,
               ACT: tl.constexpr, CLIP: tl.constexpr, PREC: tl.constexpr):  # fmt: skip
    """Keys' forward and surprise errors of M(k) = W2 σ(W1 k) (+ k) at the chunk-start weights
    (read from w1_ptr, w2_ptr + off: [F, D] and [D, F]).

    Returns z = K W1ᵀ [BT, BF], a = σ(z), e = 2 (M(K) - V) [BT, BD], r = e W2 [BT, BF],
    δ = r ⊙ σ'(z) (so u1 = δ kᵀ, u2 = e aᵀ), the squared surprise norm and the clip scale.
    """
    z = mm(xk, tl.trans(load_state(w1_ptr, off, rf, rd, F, D)), PREC)
    a = act_fwd(z, ACT)
    o = mm(a, tl.trans(load_state(w2_ptr, off, rd, rf, D, F)), PREC)
    if RES:
        o += xk
    e = 2.0 * (o - xv)
    r = mm(e, load_state(w2_ptr, off, rd, rf, D, F), PREC)
    dlt = r * act_grad(z, ACT)
    sq = tl.sum(dlt * dlt, axis=1) * tl.sum(xk * xk, axis=1)
    sq += tl.sum(e * e, axis=1) * tl.sum(a * a, axis=1)
    return z, a, e, r, dlt, sq, surprise_scale(sq, tau, CLIP)


@triton.jit
def mlp_fwd_kernel(
    q, k, v, th, la, ln, w1_0, s1_0, w2_0, s2_0, y,
    w1_end, s1_end, w2_end, s2_end, w1_chk, s1_chk, w2_chk, s2_chk, zq_buf,
    T, H, NC, NS, tau,
    D: tl.constexpr, F: tl.constexpr, BD: tl.constexpr, BF: tl.constexpr, BT: tl.constexpr,
    ACT: tl.constexpr, RES: tl.constexpr, CLIP: tl.constexpr, NORM: tl.constexpr,
    SAVE: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Depth-2 MLP memory; grid (B*H,). W1, S1: [B*H, F, D]; W2, S2: [B*H, D, F]; with SAVE, the
    queries' hidden pre-activations Zq [B, T, H, F] go to zq_buf for the backward.

    The state lives in the [B*H, NS, ...] slot buffers, not in registers (at D=64, F=128 the four
    matrices alone would fill the register file): chunk c reads slot c % NS where it needs a
    matrix and writes the next chunk's state to slot (c + 1) % NS. NS = NC + 1 keeps every
    chunk-start state for the backward; NS = 2 (no gradients) only alternates.
    """
    i_bh = tl.program_id(0)
    i_b = i_bh // H
    i_h = i_bh % H
    rt = tl.arange(0, BT)
    rd = tl.arange(0, BD)
    rf = tl.arange(0, BF)
    md = rd < D
    base = i_bh.to(tl.int64) * F * D
    slots = i_bh.to(tl.int64) * NS * F * D
    copy_state(w1_0, base, w1_chk, slots, rf, rd, F, D)
    copy_state(s1_0, base, s1_chk, slots, rf, rd, F, D)
    copy_state(w2_0, base, w2_chk, slots, rd, rf, D, F)
    copy_state(s2_0, base, s2_chk, slots, rd, rf, D, F)
    tl.debug_barrier()
    for c in range(NC):
        cur = slots + (c % NS) * F * D
        nxt = slots + ((c + 1) % NS) * F * D
        t = c * BT + rt
        m_d = (t < T)[:, None] & md[None, :]
        xk = load_rows(k, i_b, i_h, t, rd, T, H, D, m_d)
        xv = load_rows(v, i_b, i_h, t, rd, T, H, D, m_d)
        gt, gl, gn = load_gates(th, la, ln, i_b, i_h, t, T, H)
        last = tl.minimum(T - c * BT, BT) - 1
        g, _gp, _la, _ln, beta, gamma, h, _en, rho = chunk_gates(gt, gl, gn, last, BT)
        _z, a, e, _r, dlt, _sq, scale = mlp_errors(
            xk, xv, w1_chk, w2_chk, cur, rd, rf, D, F, tau, RES, ACT, CLIP, PREC
        )
        e = e * scale[:, None]
        dlt = dlt * scale[:, None]
        n = tl.full((BT,), 1.0, tl.float32)
        if NORM:
            wt = curvature_weights(g, scale, BT)
            n = 1.0 / (1.0 + curvature_norm(wt, xk) + curvature_norm(wt, a))
        xq = load_rows(q, i_b, i_h, t, rd, T, H, D, m_d)
        zq = dual_layer_out(xq, xk, dlt, w1_chk, s1_chk, cur, rf, rd, F, D, g, beta, gamma, n,
                            BT, PREC)  # fmt: skip
        if SAVE:
            m_f = (t < T)[:, None] & (rf < F)[None, :]
            store_rows(zq_buf, zq, i_b, i_h, t, rf, T, H, F, m_f)
        hq = act_fwd(zq, ACT)
        out = dual_layer_out(hq, a, e, w2_chk, s2_chk, cur, rd, rf, D, F, g, beta, gamma, n,
                             BT, PREC)  # fmt: skip
        if RES:
            out += xq
        y_off = ((i_b * T + t).to(tl.int64) * H + i_h) * D
        tl.store(y + y_off[:, None] + rd[None, :], out.to(y.dtype.element_ty), mask=m_d)
        dual_layer_step(xk, dlt, w1_chk, s1_chk, cur, nxt, rf, rd, F, D, g, beta, gamma, h, rho,
                        n, last, BT, PREC)  # fmt: skip
        dual_layer_step(a, e, w2_chk, s2_chk, cur, nxt, rd, rf, D, F, g, beta, gamma, h, rho,
                        n, last, BT, PREC)  # fmt: skip
        tl.debug_barrier()
    end = slots + (NC % NS) * F * D
    copy_state(w1_chk, end, w1_end, base, rf, rd, F, D)
    copy_state(s1_chk, end, s1_end, base, rf, rd, F, D)
    copy_state(w2_chk, end, w2_end, base, rd, rf, D, F)
    copy_state(s2_chk, end, s2_end, base, rd, rf, D, F)
