"""Triton building blocks of the chunked neural memory: gate products and one dual-form layer.

Inside a chunk of BT tokens (rows past the chunk's last real token, ``last``, carry θ = 0 and
zero log-gates and are never read back), with a = log(1-α), n = log η:

    L_A[t,s] = exp Σ_{s<j≤t} a_j,  L_N[s,i] = exp Σ_{i<j≤s} n_j   (lower triangles, else 0)
    β_t = exp Σ_{j≤t} a_j          γ_t = Σ_{s≤t} L_A[t,s] exp Σ_{j≤s} n_j
    G_{t,i} = θ_i (L_A L_N)_{t,i}  h_i = θ_i L_N[last,i]      ρ = exp Σ_{j≤last} n_j

Each exponent is the sum over its own index range (a masked cumulative sum, like chunk.py's
segment sums): no difference of large prefix sums, no division of cumulative products, and
every factor is ≤ 1, so nothing overflows.

One dual-form layer with weights W [DO, DI] and momentum S maps query-side inputs X [BT, DI],
key-side inputs K [BT, DI] and surprise errors E [BT, DO] (u_i = e_i k_iᵀ, scaled by any clip
factor) to

    Y   = diag(β) X Wᵀ + diag(γ) X Sᵀ - diag(n) (tril(X Kᵀ) ⊙ G) E
    W_b = β_last W + γ_last S - n_last Eᵀ diag(G_last,:) K    S_b = ρ S - n_last Eᵀ diag(h) K

where n [BT] is the normalized update's damping 1 / (1 + Σ_l ‖C_l‖_F) (`curvature_norm`; ones
for the paper's update). The backward helpers return the gradients of every input of these maps.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _round_bf16(x):
    """float32 x rounded to the nearest bfloat16 value (ties to even), kept in float32."""
    bits = x.to(tl.int32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def mm(a, b, PREC: tl.constexpr):
    """a @ b with float32 accumulation. PREC "bf16": bfloat16 operands (the tensor-core path for
    16-bit inputs); "bf16-emulated": the same products from operands rounded in float32 (Triton's
    interpreter neither rounds to nearest nor multiplies bfloat16 dot operands correctly);
    otherwise PREC is tl.dot's input_precision."""
    if PREC == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    elif PREC == "bf16-emulated":
        return tl.dot(_round_bf16(a), _round_bf16(b))
    else:
        return tl.dot(a, b, input_precision=PREC)


@triton.jit
def _at(x, r, last):
    """Element `last` of a vector indexed by r, as a scalar."""
    return tl.sum(tl.where(r == last, x, 0.0), axis=0)


@triton.jit
def _segment_exp(x, r):
    """[t, s] = exp Σ_{s<j≤t} x_j for t ≥ s, 0 above the diagonal; x [BT] indexed by r."""
    seg = tl.cumsum(tl.where(r[:, None] > r[None, :], x[:, None], 0.0), axis=0)
    return tl.exp(tl.where(r[:, None] >= r[None, :], seg, float("-inf")))


@triton.jit
def chunk_gates(th, la, ln, last, BT: tl.constexpr):
    """Gate products of one chunk from θ, log(1-α), log η (each [BT], float32).

    Returns (G, G/θ, L_A, L_N [BT, BT], β, γ, h, exp(cumsum log η) [BT], ρ scalar).
    """
    r = tl.arange(0, BT)
    la_mat = _segment_exp(la, r)
    ln_mat = _segment_exp(ln, r)
    gp = tl.dot(la_mat, ln_mat, input_precision="ieee")
    g = gp * th[None, :]
    beta = tl.exp(tl.cumsum(la, axis=0))
    en = tl.exp(tl.cumsum(ln, axis=0))
    gamma = tl.sum(la_mat * en[None, :], axis=1)
    h = th * tl.sum(tl.where(r[:, None] == last, ln_mat, 0.0), axis=0)
    return g, gp, la_mat, ln_mat, beta, gamma, h, en, _at(en, r, last)


@triton.jit
def dual_layer_fwd(
    x, k, e, w, s, g, beta, gamma, h, rho, n, last, BT: tl.constexpr, PREC: tl.constexpr
):
    """Outputs Y [BT, DO] and end state (W_b, S_b) [DO, DI] of one dual-form layer whose update
    is damped by n [BT] per row (ones for the paper's update)."""
    r = tl.arange(0, BT)
    tril = r[:, None] >= r[None, :]
    p = tl.where(tril, mm(x, tl.trans(k), PREC), 0.0)
    y = beta[:, None] * mm(x, tl.trans(w), PREC)
    y += gamma[:, None] * mm(x, tl.trans(s), PREC)
    y -= n[:, None] * mm(p * g, e, PREC)
    n_last = _at(n, r, last)
    g_last = tl.sum(tl.where(r[:, None] == last, g, 0.0), axis=0) * n_last
    w_new = _at(beta, r, last) * w + _at(gamma, r, last) * s
    w_new -= mm(tl.trans(e * g_last[:, None]), k, PREC)
    s_new = rho * s - mm(tl.trans(e * (h * n_last)[:, None]), k, PREC)
    return y, w_new, s_new


@triton.jit
def load_state(ptr, off, rows, cols, R, C):
    """A float32 [len(rows), len(cols)] tile of an [R, C] matrix starting at ptr + off."""
    mask = (rows < R)[:, None] & (cols < C)[None, :]
    return tl.load(ptr + off + rows[:, None] * C + cols[None, :], mask=mask, other=0.0)


@triton.jit
def store_state(ptr, off, val, rows, cols, R, C):
    """Write a [len(rows), len(cols)] tile of an [R, C] matrix starting at ptr + off."""
    mask = (rows < R)[:, None] & (cols < C)[None, :]
    tl.store(ptr + off + rows[:, None] * C + cols[None, :], val, mask=mask)


@triton.jit
def copy_state(src, src_off, dst, dst_off, rows, cols, R, C):
    """Copy a tile of an [R, C] matrix from src + src_off to dst + dst_off."""
    store_state(dst, dst_off, load_state(src, src_off, rows, cols, R, C), rows, cols, R, C)


@triton.jit
def dual_layer_out(
    x, k, e, w_ptr, s_ptr, off, rows, cols, R, C, g, beta, gamma, n,
    BT: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Y of `dual_layer_fwd`, with W and S [R, C] read from w_ptr, s_ptr + off where used
    (rows, cols: their padded index ranges)."""
    r = tl.arange(0, BT)
    p = tl.where(r[:, None] >= r[None, :], mm(x, tl.trans(k), PREC), 0.0)
    y = beta[:, None] * mm(x, tl.trans(load_state(w_ptr, off, rows, cols, R, C)), PREC)
    y += gamma[:, None] * mm(x, tl.trans(load_state(s_ptr, off, rows, cols, R, C)), PREC)
    y -= n[:, None] * mm(p * g, e, PREC)
    return y


@triton.jit
def dual_layer_step(
    k, e, w_ptr, s_ptr, cur, nxt, rows, cols, R, C, g, beta, gamma, h, rho, n, last,
    BT: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """End state (W_b, S_b) of `dual_layer_fwd` from the state at w_ptr, s_ptr + cur, written to
    w_ptr, s_ptr + nxt."""
    r = tl.arange(0, BT)
    n_last = _at(n, r, last)
    g_last = tl.sum(tl.where(r[:, None] == last, g, 0.0), axis=0) * n_last
    w = load_state(w_ptr, cur, rows, cols, R, C)
    s = load_state(s_ptr, cur, rows, cols, R, C)
    w_new = _at(beta, r, last) * w + _at(gamma, r, last) * s
    w_new -= mm(tl.trans(e * g_last[:, None]), k, PREC)
    s_new = rho * s - mm(tl.trans(e * (h * n_last)[:, None]), k, PREC)
    store_state(w_ptr, nxt, w_new, rows, cols, R, C)
    store_state(s_ptr, nxt, s_new, rows, cols, R, C)


@triton.jit
def curvature_terms(wt, x):
    """‖C_t‖_F = (Σ_{i,j} wt_{t,i} wt_{t,j} (x_i·x_j)²)^(1/2) [BT] for one layer's inputs x [BT, DX]
    and weights wt [BT, BT] (s_i D_{t,i}), with the Gram matrix x xᵀ and wt (x xᵀ)² that its
    backward reuses; TF32 products: only a step size depends on it."""
    gram = tl.dot(x, tl.trans(x), input_precision="tf32")
    m = tl.dot(wt, gram * gram, input_precision="tf32")
    norm = tl.sqrt(tl.maximum(tl.sum(m * wt, axis=1), 0.0))
    return norm, gram, m


@triton.jit
def curvature_norm(wt, x):
    """‖C_t‖_F of `curvature_terms`."""
    norm, _gram, _m = curvature_terms(wt, x)
    return norm


@triton.jit
def curvature_norm_bwd(d_norm, wt, x, gram, m, norm):
    """Backward of `curvature_terms`: (d wt [BT, BT], dx [BT, DX]) from d‖C_t‖_F [BT]."""
    dq = tl.where(norm > 0.0, d_norm / (2.0 * tl.maximum(norm, 1e-30)), 0.0)
    d_wt = 2.0 * dq[:, None] * m
    d_sq = tl.dot(tl.trans(wt), dq[:, None] * wt, input_precision="tf32")
    dx = 4.0 * tl.dot(gram * d_sq, x, input_precision="tf32")
    return d_wt, dx


@triton.jit
def dual_layer_bwd(
    x, k, e, w, s, g, beta, gamma, h, rho, n, dy, dw_b, ds_b, last,
    BT: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Backward of `dual_layer_fwd` for output gradients dY [BT, DO], dW_b, dS_b [DO, DI].

    Returns (dX, dK, dE, dW, dS, dG [BT,BT], dβ [BT], dγ [BT], dh [BT], dρ scalar, dn [BT]); dW
    and dS are the gradients w.r.t. the layer's chunk-start state through this layer only (the
    error E's dependence on W belongs to the caller).
    """
    r = tl.arange(0, BT)
    tril = r[:, None] >= r[None, :]
    is_last = r == last
    p = tl.where(tril, mm(x, tl.trans(k), PREC), 0.0)
    pg = p * g
    beta_b = _at(beta, r, last)
    gamma_b = _at(gamma, r, last)
    n_last = _at(n, r, last)
    g_row = tl.sum(tl.where(r[:, None] == last, g, 0.0), axis=0)
    g_last = g_row * n_last
    # Y = ... - diag(n) (P ⊙ G) E  =>  d(diag(n) P ⊙ G) = -dY Eᵀ
    dm = -mm(dy, tl.trans(e), PREC)
    dn = tl.sum(dm * pg, axis=1)
    dm = dm * n[:, None]
    dp = tl.where(tril, dm * g, 0.0)
    dg = tl.where(tril, dm * p, 0.0)
    # dβ_t = dy_t · (W x_t) = x_t · (dy_t W): the products dX needs anyway
    dyw = mm(dy, w, PREC)
    dys = mm(dy, s, PREC)
    dx = beta[:, None] * dyw + gamma[:, None] * dys
    dx += mm(dp, k, PREC)
    dk = mm(tl.trans(dp), x, PREC)
    dw = mm(tl.trans(dy * beta[:, None]), x, PREC) + beta_b * dw_b
    ds = mm(tl.trans(dy * gamma[:, None]), x, PREC)
    ds += gamma_b * dw_b + rho * ds_b
    dbeta = tl.sum(x * dyw, axis=1)
    dgamma = tl.sum(x * dys, axis=1)
    dbeta += tl.where(is_last, tl.sum(tl.sum(dw_b * w, axis=1), axis=0), 0.0)
    dgamma += tl.where(is_last, tl.sum(tl.sum(dw_b * s, axis=1), axis=0), 0.0)
    drho = tl.sum(tl.sum(ds_b * s, axis=1), axis=0)
    # end states: W_b = ... - n_b Σ_i g_i e_i k_iᵀ, S_b = ρ S - n_b Σ_i h_i e_i k_iᵀ
    kw = mm(k, tl.trans(dw_b), PREC)
    ks = mm(k, tl.trans(ds_b), PREC)
    de = -mm(tl.trans(pg * n[:, None]), dy, PREC)
    de -= g_last[:, None] * kw + (h * n_last)[:, None] * ks
    dk -= g_last[:, None] * mm(e, dw_b, PREC)
    dk -= (h * n_last)[:, None] * mm(e, ds_b, PREC)
    ekw = tl.sum(e * kw, axis=1)
    eks = tl.sum(e * ks, axis=1)
    dg += tl.where(r[:, None] == last, -(ekw * n_last)[None, :], 0.0)
    dh = -eks * n_last
    dn += tl.where(is_last, -tl.sum(g_row * ekw, axis=0) - tl.sum(h * eks, axis=0), 0.0)
    return dx, dk, de, dw, ds, dg, dbeta, dgamma, dh, drho, dn


@triton.jit
def chunk_gates_bwd(
    th, gp, la_mat, ln_mat, beta, h, en, rho, dg, dgp, dbeta, dgamma, dh, drho, last,
    BT: tl.constexpr,
):  # fmt: skip
    """Gradients of θ, log(1-α), log η ([BT] each) from those of G, β, γ, h, ρ, and of G/θ = D
    directly (dgp: the normalized update's curvature; zeros for the paper's).

    An entry exp Σ_{s<j≤t} x_j with gradient-times-value R[t, s] sends R to x_{s+1..t}; summed,
    x_j receives Σ_{t≥j} (Σ_s R[t, s] - Σ_s R[s, t]): row minus column sums, then a reverse
    cumulative sum.
    """
    r = tl.arange(0, BT)
    tril = r[:, None] >= r[None, :]
    p_last = tl.sum(tl.where(r[:, None] == last, ln_mat, 0.0), axis=0)
    dth = tl.sum(dg * gp, axis=0) + dh * p_last
    dgp += dg * th[None, :]
    dla_mat = tl.dot(dgp, tl.trans(ln_mat), input_precision="ieee") + dgamma[:, None] * en[None, :]
    dla_mat = tl.where(tril, dla_mat, 0.0) * la_mat
    dln_mat = tl.where(tril, tl.dot(tl.trans(la_mat), dgp, input_precision="ieee"), 0.0) * ln_mat
    d_a = tl.sum(dla_mat, axis=1) - tl.sum(dla_mat, axis=0) + dbeta * beta
    dn = tl.sum(la_mat * dgamma[:, None], axis=0)
    d_n = tl.sum(dln_mat, axis=1) - tl.sum(dln_mat, axis=0) + dn * en
    hr = dh * h
    d_n += tl.where(r == last, tl.sum(hr, axis=0) + drho * rho, 0.0) - hr
    dla = tl.cumsum(d_a, axis=0, reverse=True)
    dln = tl.cumsum(d_n, axis=0, reverse=True)
    return dth, dla, dln


@triton.jit
def act_fwd(x, ACT: tl.constexpr):
    """σ(x) of the MLP memory: ACT 0 = SiLU, 1 = GELU (erf), 2 = ReLU."""
    if ACT == 0:
        return x * tl.sigmoid(x)
    elif ACT == 1:
        return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
    else:
        return tl.maximum(x, 0.0)


@triton.jit
def act_grad(x, ACT: tl.constexpr):
    """σ'(x)."""
    if ACT == 0:
        sg = tl.sigmoid(x)
        return sg * (1.0 + x * (1.0 - sg))
    elif ACT == 1:
        pdf = tl.exp(-0.5 * x * x) * 0.3989422804014327
        return 0.5 * (1.0 + tl.math.erf(x * 0.7071067811865476)) + x * pdf
    else:
        return tl.where(x > 0.0, 1.0, 0.0)


@triton.jit
def act_grad2(x, ACT: tl.constexpr):
    """σ''(x) (ReLU: 0 almost everywhere)."""
    if ACT == 0:
        sg = tl.sigmoid(x)
        return sg * (1.0 - sg) * (2.0 + x * (1.0 - 2.0 * sg))
    elif ACT == 1:
        return tl.exp(-0.5 * x * x) * 0.3989422804014327 * (2.0 - x * x)
    else:
        return tl.zeros(x.shape, tl.float32)
