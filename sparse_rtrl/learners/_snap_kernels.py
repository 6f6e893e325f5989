"""Compiled kernels of SnAp-n: the mask (reach) builder and the per-step update.

Layout of the influence. Parameters that share a seed set (the states they
touch immediately: unit ``i`` for vanilla and GRU; ``{h_i, c_i}`` or ``{h_i}``
for the LSTM) share their reach ``R_n``, so the influence of one such *group*
is a dense ``|R_n| x q`` block, stored row-major in one flat array. The update
``J <- mask * (D J + I)`` of a group is then a small sparse-times-dense product
``D[R, R] @ J_block`` whose inner loop runs over the ``q`` contiguous columns.

Plans are built once with a sizing pass and a filling pass; the step kernel
allocates nothing. ``plan`` is a ``snap.SnApPlan``. SnAp-1 of a cell whose
gates each touch one state keeps one entry per parameter, in parameter order:
that layout is updated by the per-parameter trace kernel
(``_base_kernels.trace_update``) that RFLO and KeRNL use too.
"""

import numpy as np

from numba import prange, types, uint64

from .._jit import njit, overload, parallel_njit
from ._base_kernels import form_dynamics, take_grad, trace_update
from ._loop_kernels import loop_hooks, zero


@njit
def _reach(seed_ptr, seed_rows, out_ptr, out_idx, n_steps, marker, frontier, g, rows_out, write):
    """Size (and, if ``write``, fill) the reach of group ``g`` after ``n_steps``.

    ``out_ptr/out_idx`` list, for each state ``j``, the states ``k`` with
    ``D[k, j]`` structurally nonzero (the transpose of D's pattern).
    ``marker`` must be all -1 on entry and is restored on exit.
    """
    count = 0
    for s in range(seed_ptr[g], seed_ptr[g + 1]):
        k = seed_rows[s]
        if marker[k] < 0:
            marker[k] = 1
            frontier[count] = k
            count += 1
    lo = 0
    hi = count
    for _ in range(n_steps - 1):
        if lo == hi:
            break
        for f in range(lo, hi):
            j = frontier[f]
            for e in range(out_ptr[j], out_ptr[j + 1]):
                k = out_idx[e]
                if marker[k] < 0:
                    marker[k] = 1
                    frontier[count] = k
                    count += 1
        lo = hi
        hi = count
    for f in range(count):
        marker[frontier[f]] = -1
        if write:
            rows_out[f] = frontier[f]
    return count


@njit
def reach_sizes(seed_ptr, seed_rows, out_ptr, out_idx, n_steps, n_state):
    """Sizing pass: ``|R_n|`` of every group."""
    n_groups = seed_ptr.shape[0] - 1
    marker = np.full(n_state, -1, dtype=np.int32)
    frontier = np.empty(n_state, dtype=np.int32)
    sizes = np.empty(n_groups, dtype=np.int64)
    dummy = np.empty(0, dtype=np.int32)
    for g in range(n_groups):
        sizes[g] = _reach(seed_ptr, seed_rows, out_ptr, out_idx, n_steps, marker, frontier, g, dummy, False)
    return sizes


@njit
def reach_fill(seed_ptr, seed_rows, out_ptr, out_idx, n_steps, n_state, row_ptr, rows):
    """Filling pass: the reach of every group into ``rows[row_ptr[g]:row_ptr[g+1]]`` (in the order
    found: ``snap_layout`` sorts each group's rows)."""
    n_groups = seed_ptr.shape[0] - 1
    marker = np.full(n_state, -1, dtype=np.int32)
    frontier = np.empty(n_state, dtype=np.int32)
    for g in range(n_groups):
        seg = rows[row_ptr[g]:row_ptr[g + 1]]
        _reach(seed_ptr, seed_rows, out_ptr, out_idx, n_steps, marker, frontier, g, seg, True)


@njit
def plan_sizes(row_ptr, rows, dyn_ptr, dyn_idx, n_state):
    """Sizing pass: for each reach row, how many of D's entries stay inside the group."""
    local = np.full(n_state, -1, dtype=np.int32)
    counts = np.zeros(rows.shape[0], dtype=np.int64)
    for g in range(row_ptr.shape[0] - 1):
        for a in range(row_ptr[g], row_ptr[g + 1]):
            local[rows[a]] = a - row_ptr[g]
        for a in range(row_ptr[g], row_ptr[g + 1]):
            k = rows[a]
            c = 0
            for e in range(dyn_ptr[k], dyn_ptr[k + 1]):
                if local[dyn_idx[e]] >= 0:
                    c += 1
            counts[a] = c
        for a in range(row_ptr[g], row_ptr[g + 1]):
            local[rows[a]] = -1
    return counts


@njit
def plan_fill(row_ptr, rows, dyn_ptr, dyn_idx, n_state, plan_ptr, plan_col, plan_entry):
    """Filling pass: ``D[k, j]`` inside group g as (local column of j, index into D's data)."""
    local = np.full(n_state, -1, dtype=np.int32)
    for g in range(row_ptr.shape[0] - 1):
        for a in range(row_ptr[g], row_ptr[g + 1]):
            local[rows[a]] = a - row_ptr[g]
        for a in range(row_ptr[g], row_ptr[g + 1]):
            k = rows[a]
            w = plan_ptr[a]
            for e in range(dyn_ptr[k], dyn_ptr[k + 1]):
                j = local[dyn_idx[e]]
                if j >= 0:
                    plan_col[w] = j
                    plan_entry[w] = e
                    w += 1
        for a in range(row_ptr[g], row_ptr[g + 1]):
            local[rows[a]] = -1


@njit
def _block_rows(Jb, work, d, base, q, r0, r, plan_ptr, plan_col, plan_entry):
    """``work[a] = sum over the plan's entries of D[k_a, j] * block row j``, every row ``a`` of one group.

    Up to four source rows per pass over ``q`` (the first pass writes, so the
    scratch needs no zeroing): the row being built is loaded and stored once
    per four entries instead of once per entry. Offsets are unsigned so that
    numba skips negative-index wraparound and the loops stay contiguous
    vector code; no slices are made, because a slice made inside a branch
    keeps its (atomic) reference counting. Each case is written out: a
    generic inlined helper measured 3-4x slower.
    """
    for a in range(r):
        ob = uint64(a) * q
        w = plan_ptr[r0 + a]
        m = plan_ptr[r0 + a + 1] - w
        first = True
        while m > 0:
            if m >= 4:
                d0 = d[plan_entry[w]]
                d1 = d[plan_entry[w + 1]]
                d2 = d[plan_entry[w + 2]]
                d3 = d[plan_entry[w + 3]]
                s0 = base + uint64(plan_col[w]) * q
                s1 = base + uint64(plan_col[w + 1]) * q
                s2 = base + uint64(plan_col[w + 2]) * q
                s3 = base + uint64(plan_col[w + 3]) * q
                if first:
                    for cc in range(q):
                        work[ob + cc] = d0 * Jb[s0 + cc] + d1 * Jb[s1 + cc] + d2 * Jb[s2 + cc] + d3 * Jb[s3 + cc]
                else:
                    for cc in range(q):
                        work[ob + cc] += d0 * Jb[s0 + cc] + d1 * Jb[s1 + cc] + d2 * Jb[s2 + cc] + d3 * Jb[s3 + cc]
                w += 4
                m -= 4
            elif m == 3:
                d0 = d[plan_entry[w]]
                d1 = d[plan_entry[w + 1]]
                d2 = d[plan_entry[w + 2]]
                s0 = base + uint64(plan_col[w]) * q
                s1 = base + uint64(plan_col[w + 1]) * q
                s2 = base + uint64(plan_col[w + 2]) * q
                if first:
                    for cc in range(q):
                        work[ob + cc] = d0 * Jb[s0 + cc] + d1 * Jb[s1 + cc] + d2 * Jb[s2 + cc]
                else:
                    for cc in range(q):
                        work[ob + cc] += d0 * Jb[s0 + cc] + d1 * Jb[s1 + cc] + d2 * Jb[s2 + cc]
                w += 3
                m -= 3
            elif m == 2:
                d0 = d[plan_entry[w]]
                d1 = d[plan_entry[w + 1]]
                s0 = base + uint64(plan_col[w]) * q
                s1 = base + uint64(plan_col[w + 1]) * q
                if first:
                    for cc in range(q):
                        work[ob + cc] = d0 * Jb[s0 + cc] + d1 * Jb[s1 + cc]
                else:
                    for cc in range(q):
                        work[ob + cc] += d0 * Jb[s0 + cc] + d1 * Jb[s1 + cc]
                w += 2
                m -= 2
            else:
                d0 = d[plan_entry[w]]
                s0 = base + uint64(plan_col[w]) * q
                if first:
                    for cc in range(q):
                        work[ob + cc] = d0 * Jb[s0 + cc]
                else:
                    for cc in range(q):
                        work[ob + cc] += d0 * Jb[s0 + cc]
                w += 1
                m -= 1
            first = False


@njit
def _block_store(Jb, work, base, q, r, c0, rows, r0, cb, accb, accumulate):
    """If ``accumulate``, ``acc += c J_new`` (four rows per pass over ``q``); then
    copy the new block from the scratch into ``J`` in one contiguous pass.

    Kept as two loops on purpose: one loop that also stored the four rows
    touched nine memory ranges, more than LLVM checks for overlap at run time,
    and was left scalar (measured 4x slower).
    """
    if accumulate:
        a = 0
        while a + 4 <= r:
            o0 = uint64(a) * q
            o1 = o0 + q
            o2 = o1 + q
            o3 = o2 + q
            k0 = cb[rows[r0 + a]]
            k1 = cb[rows[r0 + a + 1]]
            k2 = cb[rows[r0 + a + 2]]
            k3 = cb[rows[r0 + a + 3]]
            for cc in range(q):
                accb[c0 + cc] += k0 * work[o0 + cc] + k1 * work[o1 + cc] + k2 * work[o2 + cc] + k3 * work[o3 + cc]
            a += 4
        while a < r:
            o0 = uint64(a) * q
            k0 = cb[rows[r0 + a]]
            for cc in range(q):
                accb[c0 + cc] += k0 * work[o0 + cc]
            a += 1
    for cc in range(uint64(r) * q):
        Jb[base + cc] = work[cc]


@njit
def _snap_update_groups(b, g_lo, g_hi, plan, dyn, coef, z, c, J, work, acc, accumulate):
    """The update of groups ``g_lo:g_hi`` of stream ``b``, with ``work`` as scratch.

    A group reads and writes only its own block and its own columns of the
    accumulator, so disjoint ranges of groups can run on different cores.
    """
    (row_ptr, rows, col_ptr, col_gate, col_src, inf_ptr, plan_ptr, plan_col, plan_entry, seed_ptr,
     seed_local) = plan
    Jb = J[b]
    d = dyn[b]
    cb = c[b]
    zb = z[b]
    coefb = coef[b]
    accb = acc[b]
    for g in range(g_lo, g_hi):
        r0 = row_ptr[g]
        r = row_ptr[g + 1] - r0
        c0 = uint64(col_ptr[g])
        q = uint64(col_ptr[g + 1]) - c0
        base = uint64(inf_ptr[g])
        # new block = D[R, R] @ old block, into the scratch
        _block_rows(Jb, work, d, base, q, r0, r, plan_ptr, plan_col, plan_entry)
        # + the immediate influence on the group's seed states
        for s in range(seed_ptr[g], seed_ptr[g + 1]):
            a = seed_local[s]
            ob = uint64(a) * q
            ck_row = coefb[rows[r0 + a]]
            for cc in range(q):
                work[ob + cc] += ck_row[col_gate[c0 + cc]] * zb[col_src[c0 + cc]]
        _block_store(Jb, work, base, q, r, c0, rows, r0, cb, accb, accumulate)


@njit
def snap_update(plan, dyn, coef, z, c, J, scratch, acc, accumulate):
    """``J <- mask * (D J + I)`` for every stream; if ``accumulate``, ``acc += c J``.

    ``J`` (B, mask_size) holds each group's block row-major at ``inf_ptr[g]``.
    ``acc`` (B, P) is in group-column order. ``scratch`` (B, max block size).
    """
    G = plan.row_ptr.shape[0] - 1
    for b in range(J.shape[0]):
        _snap_update_groups(b, 0, G, plan, dyn, coef, z, c, J, scratch[b], acc, accumulate)


@parallel_njit
def snap_update_par(plan, dyn, coef, z, c, J, scratch, acc, accumulate):
    """``snap_update`` with the streams spread over the cores (same result)."""
    G = plan.row_ptr.shape[0] - 1
    for b in prange(J.shape[0]):
        _snap_update_groups(b, 0, G, plan, dyn, coef, z, c, J, scratch[b], acc, accumulate)


@parallel_njit
def snap_update_split(chunk_ptr, plan, dyn, coef, z, c, J, scratch, acc, accumulate):
    """``snap_update`` with each stream's groups spread over the cores, in the
    chunks ``chunk_ptr`` (same result). ``scratch`` is (chunks, max block size):
    one per chunk. For one large stream, where there are no streams to spread.
    """
    for b in range(J.shape[0]):
        for k in prange(chunk_ptr.shape[0] - 1):
            _snap_update_groups(b, chunk_ptr[k], chunk_ptr[k + 1], plan, dyn, coef, z, c, J, scratch[k], acc,
                                accumulate)


@njit
def _snap_accumulate_stream(b, plan, c, J, acc):
    row_ptr, rows, col_ptr, inf_ptr = plan.row_ptr, plan.rows, plan.col_ptr, plan.inf_ptr
    Jb = J[b]
    accb = acc[b]
    cb = c[b]
    for g in range(row_ptr.shape[0] - 1):
        r0 = row_ptr[g]
        c0 = uint64(col_ptr[g])
        q = uint64(col_ptr[g + 1]) - c0
        base = uint64(inf_ptr[g])
        for a in range(row_ptr[g + 1] - r0):
            ck = cb[rows[r0 + a]]
            if ck != 0.0:
                o = base + uint64(a) * q
                for cc in range(q):
                    accb[c0 + cc] += ck * Jb[o + cc]


@njit
def snap_accumulate(plan, c, J, acc):
    """``acc += c J`` without changing ``J`` (a second credit for the same step)."""
    for b in range(J.shape[0]):
        _snap_accumulate_stream(b, plan, c, J, acc)


@parallel_njit
def snap_accumulate_par(plan, c, J, acc):
    """``snap_accumulate`` with the streams spread over the cores (same result)."""
    for b in prange(J.shape[0]):
        _snap_accumulate_stream(b, plan, c, J, acc)


@njit
def _take_block_range(acc, block_params, out, lo, hi):
    a0 = acc[0]
    for k in range(uint64(lo), uint64(hi)):
        out[block_params[k]] = a0[k]
        a0[k] = 0.0
    for b in range(1, acc.shape[0]):
        ab = acc[b]
        for k in range(uint64(lo), uint64(hi)):
            out[block_params[k]] += ab[k]
            ab[k] = 0.0


@njit
def take_block_grad(acc, block_params, out):
    """Sum a group-ordered accumulator over the batch into parameter order; zero it.

    Column ``k`` of the group order is parameter ``block_params[k]``: reads
    stream, writes run along the rows of the weight matrices.
    """
    _take_block_range(acc, block_params, out, 0, out.shape[0])


@parallel_njit
def take_block_grad_par(acc, block_params, out):
    """``take_block_grad`` over chunks of columns on all cores (same result)."""
    chunk = 8192
    n_chunks = (out.shape[0] + chunk - 1) // chunk
    for c in prange(n_chunks):
        _take_block_range(acc, block_params, out, c * chunk, min(out.shape[0], (c + 1) * chunk))


# -- the compiled online loop (``_loop_kernels``): SnAp and e-prop -----------------------------


def snap_step(diagonal, snap, coef, presyn, credit, acc):
    """The influence update with gradient accumulation, in the diagonal layout (SnAp-1 in
    parameter order: the per-parameter trace kernel, decay ``D_ii``) or the block layout.

    ``diagonal`` is ``True`` or ``None``: two types, so only one layout is
    compiled into the loop. Both compiled behind a run-time flag made the
    float32 loop 35% slower (32-unit vanilla RNN: 4.0 -> 5.4 us per step).
    """
    if diagonal is True:
        trace_update(snap.seg, snap.dyn, snap.diag_entry, coef, presyn, credit, snap.J, acc, True)
    else:
        snap_update(snap.plan, snap.dyn, coef, presyn, credit, snap.J, snap.scratch, acc, True)


@overload(snap_step)
def _snap_step_impl(diagonal, snap, coef, presyn, credit, acc):
    if isinstance(diagonal, types.Boolean):
        def diag(diagonal, snap, coef, presyn, credit, acc):
            trace_update(snap.seg, snap.dyn, snap.diag_entry, coef, presyn, credit, snap.J, acc, True)
        return diag

    def block(diagonal, snap, coef, presyn, credit, acc):
        snap_update(snap.plan, snap.dyn, coef, presyn, credit, snap.J, snap.scratch, acc, True)
    return block


def snap_take_grad(diagonal, acc, block_params, out):
    """The accumulator in parameter order (``diagonal`` as in ``snap_step``)."""
    if diagonal is True:
        take_grad(acc, out)
    else:
        take_block_grad(acc, block_params, out)


@overload(snap_take_grad)
def _snap_take_grad_impl(diagonal, acc, block_params, out):
    if isinstance(diagonal, types.Boolean):
        return lambda diagonal, acc, block_params, out: take_grad(acc, out)
    return lambda diagonal, acc, block_params, out: take_block_grad(acc, block_params, out)


@njit
def _loop_after_step(parts, theta, state, coef, dloc, presyn, draws):
    form_dynamics(theta, coef, dloc, parts.dyn_plan, parts.dyn)


@njit
def _loop_backward(parts, theta, credit, acc):
    snap_step(parts.diagonal, parts, parts.coef, parts.presyn, credit, acc)


@njit
def _loop_grad(parts, theta, acc, out):
    snap_take_grad(parts.diagonal, acc, parts.block_params, out)


@njit
def _loop_reset(parts):
    zero(parts.J)


def _register():
    from .snap import SnApKernelState

    loop_hooks(SnApKernelState, after_step=_loop_after_step, backward=_loop_backward, grad=_loop_grad,
               reset=_loop_reset)


_register()
