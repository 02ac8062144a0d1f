"""Fused Triton backward kernels of the chunked neural memory (linear and depth-2 MLP).

One program per (batch, head) — for the linear memory per block of BV output rows — walks the
chunks in reverse with the gradients of the chunk-end state (dW, dS): in float32 registers for
the linear memory, in two alternating global slots for the MLP memory (whose eight state-sized
matrices would not fit the register file). Each chunk is recomputed from its saved chunk-start
state, then differentiated in the dual form.
Gradients that sum over the output rows (q, k and the gates) are written per row block into
[NV, ...] float32 buffers that the caller sums.
"""

from __future__ import annotations

import triton
import triton.language as tl

from titans_dna.ops.memory.triton_dual import (
    act_fwd,
    act_grad,
    act_grad2,
    chunk_gates,
    chunk_gates_bwd,
    copy_state,
    curvature_norm_bwd,
    curvature_terms,
    dual_layer_bwd,
    load_state,
    mm,
    store_state,
)
from titans_dna.ops.memory.triton_fwd import (
    curvature_weights,
    load_gates,
    load_rows,
    mlp_errors,
    store_rows,
    surprise_scale,
)


@triton.jit
def surprise_scale_grad(sq_norm, tau, CLIP: tl.constexpr):
    """d scale / d ‖u‖² of `surprise_scale` (0 where the token is not clipped)."""
    if CLIP:
        sq = tl.maximum(sq_norm, tau * tau)
        return tl.where(sq_norm > tau * tau, -0.5 * tau * tl.math.rsqrt(sq) / sq, 0.0)
    else:
        return tl.zeros(sq_norm.shape, tl.float32)


@triton.jit
def store_gates(dth_ptr, dla_ptr, dln_ptr, dth, dla, dln, i_b, i_h, t, T, H):
    """Write gate gradients of tokens t (t < T) into [B, T, H] tensors."""
    off = (i_b * T + t).to(tl.int64) * H + i_h
    mt = t < T
    tl.store(dth_ptr + off, dth, mask=mt)
    tl.store(dla_ptr + off, dla, mask=mt)
    tl.store(dln_ptr + off, dln, mask=mt)


@triton.jit
def linear_bwd_kernel(
    q, k, v, th, la, ln, w_chk, s_chk, dy, dw_end, ds_end,
    dq, dk, dv, dth, dla, dln, dw0, ds0,
    B, T, H, NC, tau,
    D: tl.constexpr, BD: tl.constexpr, BV: tl.constexpr, BT: tl.constexpr,
    CLIP: tl.constexpr, NORM: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Backward of `linear_fwd_kernel`; grid (B*H, D / BV).

    dq, dk: [NV, B, T, H, D] float32 partial sums; dth, dla, dln: [NV, B, T, H] float32;
    dv: [B, T, H, D]; dw0, ds0: [B*H, D, D] float32 (gradients of the initial state).
    """
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
    dw = tl.load(dw_end + base + st_off, mask=st_mask, other=0.0)
    ds = tl.load(ds_end + base + st_off, mask=st_mask, other=0.0)
    # partial-sum buffers of this row block: batch index i_v * B + i_b
    i_pb = i_v * B + i_b
    for cc in range(NC):
        c = NC - 1 - cc
        chk = (i_bh.to(tl.int64) * NC + c) * D * D
        w = tl.load(w_chk + chk + st_off, mask=st_mask, other=0.0)
        s = tl.load(s_chk + chk + st_off, mask=st_mask, other=0.0)
        t = c * BT + rt
        mt = t < T
        m_d = mt[:, None] & md[None, :]
        m_v = mt[:, None] & mv[None, :]
        xq = load_rows(q, i_b, i_h, t, rd, T, H, D, m_d)
        xk = load_rows(k, i_b, i_h, t, rd, T, H, D, m_d)
        xv = load_rows(v, i_b, i_h, t, rv, T, H, D, m_v)
        xdy = load_rows(dy, i_b, i_h, t, rv, T, H, D, m_v)
        gt, gl, gn = load_gates(th, la, ln, i_b, i_h, t, T, H)
        last = tl.minimum(T - c * BT, BT) - 1
        g, gp, la_mat, ln_mat, beta, gamma, h, en, rho = chunk_gates(gt, gl, gn, last, BT)
        e = 2.0 * (mm(xk, tl.trans(w), PREC) - xv)
        k_sq = tl.sum(xk * xk, axis=1)
        e_sq = tl.sum(e * e, axis=1)
        scale = surprise_scale(e_sq * k_sq, tau, CLIP)
        n = tl.full((BT,), 1.0, tl.float32)
        if NORM:
            wt = curvature_weights(g, scale, BT)
            norm, gram, m = curvature_terms(wt, xk)
            n = 1.0 / (1.0 + norm)
        gx, gk, ge, gw, gs, dg, dbeta, dgamma, dh, drho, dn = dual_layer_bwd(
            xq, xk, e * scale[:, None], w, s, g, beta, gamma, h, rho, n, xdy, dw, ds, last,
            BT, PREC,
        )  # fmt: skip
        dgp = tl.zeros((BT, BT), tl.float32)
        d_s = tl.zeros((BT,), tl.float32)  # gradient of s = 2θc through the damping
        if NORM:
            d_wt, d_xk = curvature_norm_bwd(-dn * n * n, wt, xk, gram, m, norm)
            gk += d_xk
            dgp = d_wt * (2.0 * scale * gt)[None, :]
            d_s = tl.sum(d_wt * gp, axis=0)
        if CLIP:
            # scale depends on ‖u‖² = ‖e‖² ‖k‖²
            d_scale = tl.sum(ge * e, axis=1) + 2.0 * gt * d_s
            d_sq = d_scale * surprise_scale_grad(e_sq * k_sq, tau, CLIP)
            gk += (2.0 * d_sq * e_sq)[:, None] * xk
            ge = ge * scale[:, None] + (2.0 * d_sq * k_sq)[:, None] * e
        # e = 2 (K Wᵀ - V)
        gk += 2.0 * mm(ge, w, PREC)
        gw += 2.0 * mm(tl.trans(ge), xk, PREC)
        store_rows(dv, -2.0 * ge, i_b, i_h, t, rv, T, H, D, m_v)
        store_rows(dq, gx, i_pb, i_h, t, rd, T, H, D, m_d)
        store_rows(dk, gk, i_pb, i_h, t, rd, T, H, D, m_d)
        gth, gla, gln = chunk_gates_bwd(
            gt, gp, la_mat, ln_mat, beta, h, en, rho, dg, dgp, dbeta, dgamma, dh, drho, last, BT
        )
        gth += 2.0 * scale * d_s
        store_gates(dth, dla, dln, gth, gla, gln, i_pb, i_h, t, T, H)
        dw = gw
        ds = gs
    tl.store(dw0 + base + st_off, dw, mask=st_mask)
    tl.store(ds0 + base + st_off, ds, mask=st_mask)


@triton.jit
def mlp_bwd_kernel(
    q, k, v, th, la, ln, w1_chk, s1_chk, w2_chk, s2_chk, zq_buf, dy,
    dw1_end, ds1_end, dw2_end, ds2_end,
    dq, dk, dv, dth, dla, dln, dw1_0, ds1_0, dw2_0, ds2_0,
    dw1_c, ds1_c, dw2_c, ds2_c,
    T, H, NC, tau,
    D: tl.constexpr, F: tl.constexpr, BD: tl.constexpr, BF: tl.constexpr, BT: tl.constexpr,
    ACT: tl.constexpr, RES: tl.constexpr, CLIP: tl.constexpr, NORM: tl.constexpr,
    PREC: tl.constexpr,
):  # fmt: skip
    """Backward of `mlp_fwd_kernel`; grid (B*H,). dq, dk, dv: [B, T, H, D]; gates [B, T, H].

    As in the forward, no state matrix stays in registers across a chunk: the chunk-start state
    is read from the forward's slots where it is used, and the gradient of the chunk-end state
    is carried in the two [B*H, 2, ...] slots of dw1_c ... ds2_c (chunk cc reads slot cc % 2 and
    writes slot (cc + 1) % 2).
    """
    i_bh = tl.program_id(0)
    i_b = i_bh // H
    i_h = i_bh % H
    rt = tl.arange(0, BT)
    rd = tl.arange(0, BD)
    rf = tl.arange(0, BF)
    md = rd < D
    base = i_bh.to(tl.int64) * F * D
    carry = i_bh.to(tl.int64) * 2 * F * D
    copy_state(dw1_end, base, dw1_c, carry, rf, rd, F, D)
    copy_state(ds1_end, base, ds1_c, carry, rf, rd, F, D)
    copy_state(dw2_end, base, dw2_c, carry, rd, rf, D, F)
    copy_state(ds2_end, base, ds2_c, carry, rd, rf, D, F)
    tl.debug_barrier()
    for cc in range(NC):
        c = NC - 1 - cc
        chk = (i_bh.to(tl.int64) * (NC + 1) + c) * F * D  # the forward's NC + 1 slots
        cur = carry + (cc % 2) * F * D
        nxt = carry + ((cc + 1) % 2) * F * D
        t = c * BT + rt
        m_d = (t < T)[:, None] & md[None, :]
        xq = load_rows(q, i_b, i_h, t, rd, T, H, D, m_d)
        xk = load_rows(k, i_b, i_h, t, rd, T, H, D, m_d)
        xv = load_rows(v, i_b, i_h, t, rd, T, H, D, m_d)
        xdy = load_rows(dy, i_b, i_h, t, rd, T, H, D, m_d)
        gt, gl, gn = load_gates(th, la, ln, i_b, i_h, t, T, H)
        last = tl.minimum(T - c * BT, BT) - 1
        g, gp, la_mat, ln_mat, beta, gamma, h, en, rho = chunk_gates(gt, gl, gn, last, BT)
        z, a, e, r, dlt, sq, scale = mlp_errors(
            xk, xv, w1_chk, w2_chk, chk, rd, rf, D, F, tau, RES, ACT, CLIP, PREC
        )
        e_c = e * scale[:, None]
        dlt_c = dlt * scale[:, None]
        n = tl.full((BT,), 1.0, tl.float32)
        if NORM:
            wt = curvature_weights(g, scale, BT)
            norm_k, gram_k, m_k = curvature_terms(wt, xk)
            norm_a, gram_a, m_a = curvature_terms(wt, a)
            n = 1.0 / (1.0 + norm_k + norm_a)
        zq = load_rows(zq_buf, i_b, i_h, t, rf, T, H, F, (t < T)[:, None] & (rf < F)[None, :])
        hq = act_fwd(zq, ACT)
        # layer 2: Y = M2(σ(Zq)) with keys' activations a and errors e
        dhq, da, de, gw2, gs2, dg, dbeta, dgamma, dh, drho, dn = dual_layer_bwd(
            hq, a, e_c, load_state(w2_chk, chk, rd, rf, D, F),
            load_state(s2_chk, chk, rd, rf, D, F), g, beta, gamma, h, rho, n, xdy,
            load_state(dw2_c, cur, rd, rf, D, F), load_state(ds2_c, cur, rd, rf, D, F), last,
            BT, PREC,
        )  # fmt: skip
        store_state(ds2_c, nxt, gs2, rd, rf, D, F)
        dzq = dhq * act_grad(zq, ACT)
        # layer 1: Zq with keys k and errors δ
        gq, gk, ddlt, gw1, gs1, dg1, dbeta1, dgamma1, dh1, drho1, dn1 = dual_layer_bwd(
            xq, xk, dlt_c, load_state(w1_chk, chk, rf, rd, F, D),
            load_state(s1_chk, chk, rf, rd, F, D), g, beta, gamma, h, rho, n, dzq,
            load_state(dw1_c, cur, rf, rd, F, D), load_state(ds1_c, cur, rf, rd, F, D), last,
            BT, PREC,
        )  # fmt: skip
        store_state(ds1_c, nxt, gs1, rf, rd, F, D)
        dg += dg1
        dbeta += dbeta1
        dgamma += dgamma1
        dh += dh1
        drho += drho1
        dgp = tl.zeros((BT, BT), tl.float32)
        d_s = tl.zeros((BT,), tl.float32)  # gradient of s = 2θc through the damping
        if NORM:
            d_norm = -(dn + dn1) * n * n
            d_wt, d_xk = curvature_norm_bwd(d_norm, wt, xk, gram_k, m_k, norm_k)
            d_wt_a, d_a = curvature_norm_bwd(d_norm, wt, a, gram_a, m_a, norm_a)
            d_wt += d_wt_a
            gk += d_xk
            da += d_a
            dgp = d_wt * (2.0 * scale * gt)[None, :]
            d_s = tl.sum(d_wt * gp, axis=0)
        if RES:
            gq += xdy
        if CLIP:
            # scale depends on ‖u‖² = ‖δ‖² ‖k‖² + ‖e‖² ‖a‖²
            d_sq = tl.sum(de * e, axis=1) + tl.sum(ddlt * dlt, axis=1) + 2.0 * gt * d_s
            d_sq = d_sq * surprise_scale_grad(sq, tau, CLIP)
            gk += (2.0 * d_sq * tl.sum(dlt * dlt, axis=1))[:, None] * xk
            da += (2.0 * d_sq * tl.sum(e * e, axis=1))[:, None] * a
            de = de * scale[:, None] + (2.0 * d_sq * tl.sum(a * a, axis=1))[:, None] * e
            ddlt = ddlt * scale[:, None] + (2.0 * d_sq * tl.sum(xk * xk, axis=1))[:, None] * dlt
        # δ = (e W2) ⊙ σ'(z)
        dr = ddlt * act_grad(z, ACT)
        dz = ddlt * r * act_grad2(z, ACT)
        w2 = load_state(w2_chk, chk, rd, rf, D, F)
        de += mm(dr, tl.trans(w2), PREC)
        gw2 += mm(tl.trans(e), dr, PREC)
        # e = 2 (W2 a + [k] - v), a = σ(z), z = W1 k
        if RES:
            gk += 2.0 * de
        da += 2.0 * mm(de, w2, PREC)
        gw2 += 2.0 * mm(tl.trans(de), a, PREC)
        dz += da * act_grad(z, ACT)
        gk += mm(dz, load_state(w1_chk, chk, rf, rd, F, D), PREC)
        gw1 += mm(tl.trans(dz), xk, PREC)
        store_state(dw1_c, nxt, gw1, rf, rd, F, D)
        store_state(dw2_c, nxt, gw2, rd, rf, D, F)
        store_rows(dq, gq, i_b, i_h, t, rd, T, H, D, m_d)
        store_rows(dk, gk, i_b, i_h, t, rd, T, H, D, m_d)
        store_rows(dv, -2.0 * de, i_b, i_h, t, rd, T, H, D, m_d)
        gth, gla, gln = chunk_gates_bwd(
            gt, gp, la_mat, ln_mat, beta, h, en, rho, dg, dgp, dbeta, dgamma, dh, drho, last, BT
        )
        gth += 2.0 * scale * d_s
        store_gates(dth, dla, dln, gth, gla, gln, i_b, i_h, t, T, H)
        tl.debug_barrier()
    end = carry + (NC % 2) * F * D
    copy_state(dw1_c, end, dw1_0, base, rf, rd, F, D)
    copy_state(ds1_c, end, ds1_0, base, rf, rd, F, D)
    copy_state(dw2_c, end, dw2_0, base, rd, rf, D, F)
    copy_state(ds2_c, end, ds2_0, base, rd, rf, D, F)
