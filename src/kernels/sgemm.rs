//! f32 matrix products on x86-64 CPUs with AVX2 and FMA, in the blocked form of the BLIS papers:
//! the right operand is copied into panels of 16 columns that stay in L1 and L3 caches, the left
//! into panels of 6 rows that stay in L2, and a kernel keeps a 6 × 16 block of the result in twelve
//! vector registers while it streams both panels. Weights stored [out, in] and read transposed
//! are packed with 8 × 8 register transposes. Each thread packs its own operands and computes a
//! band of the result, so threads never wait on one another within a product. It made a LoRA
//! training step on two cores 7–8 % faster than the gemm crate did (docs/benchmarks.md).

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::mat::Mat;

/// Rows of the result per kernel call.
const MR: usize = 6;
/// Columns of the result per kernel call: two 8-lane vectors.
const NR: usize = 16;
/// Rows of the left operand packed at once: MC × KC values fill a third of a 512 KiB L2.
const MC: usize = 120;
/// Most of the inner dimension packed at once: a KC × NR right panel (20 KiB) stays in L1.
const KC: usize = 320;
/// Columns of the right operand packed at once (KC × NC values, 4 MiB, in L3).
const NC: usize = 3072;
/// Values written past a packed left panel by the register transposes.
const SPILL: usize = 8 - MR;
/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 18;

impl Mat<'_> {
    /// Element (i, j), unchecked.
    ///
    /// # Safety
    /// i < rows and j < cols.
    #[inline(always)]
    unsafe fn at(&self, i: usize, j: usize) -> f32 {
        // SAFETY: `Mat`'s constructors checked that every element (i, j) of the view lies inside its slice, and the caller passes i < rows, j < cols.
        unsafe { *self.ptr.offset(i as isize * self.rs + j as isize * self.cs) }
    }
}

/// Whether this CPU runs the kernels here.
pub fn supported() -> bool {
    super::simd::avx2()
}

/// A raw result pointer that may cross to rayon's threads: each task writes a disjoint block.
#[derive(Clone, Copy)]
struct Dst(*mut f32);
// SAFETY: a pointer is only an address; `product` hands each thread a disjoint band of the
// result to write through it, and waits for every thread before returning.
unsafe impl Send for Dst {}
// SAFETY: as for Send: threads write disjoint bands.
unsafe impl Sync for Dst {}

#[derive(Clone, Copy)]
struct Operands<'a>(Mat<'a>, Mat<'a>);
// SAFETY: the views borrow f32 slices for 'a, and threads only read through them.
unsafe impl Send for Operands<'_> {}
// SAFETY: as for Send: shared, read-only access to f32 values.
unsafe impl Sync for Operands<'_> {}

/// dst [lhs.rows × rhs.cols] (row stride `dst_rs`, column stride 1) = (dst if `accumulate`) +
/// lhs·rhs, on `threads` threads of rayon's pool (1: the calling thread).
///
/// # Safety
/// [`supported`] must hold; the operands must be valid for reads over their extents and `dst` for
/// writes (and reads when accumulating), with no other thread touching `dst` meanwhile.
pub unsafe fn product(
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    threads: usize,
) {
    // SAFETY: the contract above: AVX2 and FMA are present, the operands readable and `dst` writable over their extents, `dst` touched by no other thread; the bands handed to threads are disjoint.
    unsafe {
        let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                for i in 0..m {
                    std::ptr::write_bytes(dst.add(i * dst_rs), 0, n);
                }
            }
            return;
        }
        let threads = if m * n * k < PARALLEL_WORK {
            1
        } else {
            threads.max(1)
        };
        if threads == 1 {
            block(dst, dst_rs, accumulate, lhs, rhs, 0..m, 0..n);
            return;
        }
        // Each thread takes a band of whole kernel tiles along the longer side of the result and
        // packs what it needs on its own: no thread waits for another.
        let (dst, ops) = (Dst(dst), Operands(lhs, rhs));
        let by_rows = m >= n;
        let (len, tile) = if by_rows { (m, MR) } else { (n, NR) };
        let tiles = len.div_ceil(tile);
        let parts = threads.min(tiles);
        let band = |p: usize| (tiles * p / parts * tile).min(len);
        rayon::scope(|s| {
            for p in 0..parts {
                let range = band(p)..band(p + 1);
                s.spawn(move |_| {
                    let (dst, Operands(lhs, rhs)) = (dst, ops);
                    if by_rows {
                        block(dst.0, dst_rs, accumulate, lhs, rhs, range, 0..n);
                    } else {
                        block(dst.0, dst_rs, accumulate, lhs, rhs, 0..m, range);
                    }
                });
            }
        });
    }
}

thread_local! {
    /// Packed operands, kept per thread between products.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The rows × cols block of the result, on this thread.
///
/// # Safety
/// `dst` must be valid for writes (and reads when accumulating) over `rows` × `cols` of the result with row stride `dst_rs`, no other thread writing there; the CPU must support AVX2 and FMA.
unsafe fn block(
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    // SAFETY: the contract above; the packed panels are sized by this function for the kernel's reads.
    unsafe {
        let k = lhs.cols;
        // Equal blocks of the inner dimension, none longer than KC.
        let k_blocks = k.div_ceil(KC);
        let kc_max = k.div_ceil(k_blocks);
        PACKED.with_borrow_mut(|(packed_a, packed_b)| {
            packed_a.resize(MC.div_ceil(MR) * MR * kc_max + SPILL, 0.0);
            let nc_max = NC.min(cols.len()).div_ceil(NR) * NR;
            packed_b.resize(nc_max * kc_max, 0.0);
            for jc in cols.clone().step_by(NC) {
                let nc = NC.min(cols.end - jc);
                for kb in 0..k_blocks {
                    let pc = kb * kc_max;
                    let kc = kc_max.min(k - pc);
                    pack_rhs(packed_b, rhs, pc, kc, jc, nc);
                    let add = accumulate || kb > 0;
                    for ic in rows.clone().step_by(MC) {
                        let mc = MC.min(rows.end - ic);
                        pack_lhs(packed_a, lhs, ic, mc, pc, kc);
                        for (jp, jr) in (0..nc).step_by(NR).enumerate() {
                            let b = packed_b.as_ptr().add(jp * kc * NR);
                            let nr = NR.min(nc - jr);
                            for (ip, ir) in (0..mc).step_by(MR).enumerate() {
                                let a = packed_a.as_ptr().add(ip * kc * MR);
                                let c = dst.add((ic + ir) * dst_rs + jc + jr);
                                let mr = MR.min(mc - ir);
                                if mr == MR && nr == NR {
                                    kernel(kc, a, b, c, dst_rs, add);
                                } else {
                                    edge(kc, a, b, c, dst_rs, add, (mr, nr));
                                }
                            }
                        }
                    }
                }
            }
        });
    }
}

/// lhs[ic.., pc..] as panels of MR rows, each kc × MR with one column of the panel after another;
/// rows past the end are zeros. `out` has SPILL values to spare after the last panel.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `out` must hold the panels of `mc` × `kc` values plus SPILL; rows ic..ic+mc and columns pc..pc+kc past the matrix are not read (they are zero-filled).
unsafe fn pack_lhs(out: &mut [f32], lhs: Mat, ic: usize, mc: usize, pc: usize, kc: usize) {
    // SAFETY: reads stay inside `lhs` (rows and columns clamped to its extent, which its constructor checked) and writes inside `out` (sized by the caller, SPILL included).
    unsafe {
        for (panel, i0) in (0..mc).step_by(MR).enumerate() {
            let dst = &mut out[panel * kc * MR..(panel + 1) * kc * MR + SPILL];
            let rows = MR.min(mc - i0);
            let row = |i: usize| {
                lhs.ptr
                    .offset((ic + i0 + i) as isize * lhs.rs + pc as isize)
            };
            if lhs.cs == 1 && rows == MR {
                // Row-major: 6 × 8 blocks transposed in registers.
                let src: [*const f32; MR] = std::array::from_fn(row);
                let whole = kc / 8 * 8;
                for p in (0..whole).step_by(8) {
                    transpose_rows(src, p, dst.as_mut_ptr().add(p * MR));
                }
                for p in whole..kc {
                    for (i, r) in src.iter().enumerate() {
                        dst[p * MR + i] = *r.add(p);
                    }
                }
            } else if lhs.rs == 1 && rows == MR {
                // Column-major (a transposed operand): each column of the panel is contiguous.
                for p in 0..kc {
                    let src = lhs
                        .ptr
                        .offset((pc + p) as isize * lhs.cs + (ic + i0) as isize);
                    dst[p * MR..(p + 1) * MR].copy_from_slice(std::slice::from_raw_parts(src, MR));
                }
            } else {
                for p in 0..kc {
                    for i in 0..MR {
                        dst[p * MR + i] = if i < rows {
                            lhs.at(ic + i0 + i, pc + p)
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

/// rhs[pc.., jc..] as panels of NR columns, each kc × NR with one row of the panel after another;
/// columns past the end are zeros.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `out` must hold the panels of `kc` × `nc` values.
unsafe fn pack_rhs(out: &mut [f32], rhs: Mat, pc: usize, kc: usize, jc: usize, nc: usize) {
    // SAFETY: reads stay inside `rhs` (rows and columns clamped to its extent, which its constructor checked) and writes inside `out` (sized by the caller).
    unsafe {
        for (panel, j0) in (0..nc).step_by(NR).enumerate() {
            let dst = &mut out[panel * kc * NR..(panel + 1) * kc * NR];
            let cols = NR.min(nc - j0);
            if rhs.cs == 1 && cols == NR {
                for p in 0..kc {
                    let src = rhs
                        .ptr
                        .offset((pc + p) as isize * rhs.rs + (jc + j0) as isize);
                    dst[p * NR..(p + 1) * NR].copy_from_slice(std::slice::from_raw_parts(src, NR));
                }
            } else if rhs.rs == 1 && cols == NR {
                // A transposed operand (a weight stored [out, in] and read as [in, out]): each
                // column is contiguous, and 8 × 8 blocks are transposed in registers.
                let column = |j: usize| {
                    rhs.ptr
                        .offset((jc + j0 + j) as isize * rhs.cs + pc as isize)
                };
                let whole = kc / 8 * 8;
                for half in 0..2 {
                    let src: [*const f32; 8] = std::array::from_fn(|j| column(half * 8 + j));
                    for p in (0..whole).step_by(8) {
                        transpose_columns(src, p, dst.as_mut_ptr().add(p * NR + half * 8));
                    }
                }
                for p in whole..kc {
                    for j in 0..NR {
                        dst[p * NR + j] = *column(j).add(p);
                    }
                }
            } else {
                // Column by column: a transposed operand is read along its rows.
                for j in 0..NR {
                    if j < cols {
                        for p in 0..kc {
                            dst[p * NR + j] = rhs.at(pc + p, jc + j0 + j);
                        }
                    } else {
                        for p in 0..kc {
                            dst[p * NR + j] = 0.0;
                        }
                    }
                }
            }
        }
    }
}

/// The transpose of an 8 × 8 block held as eight rows.
#[target_feature(enable = "avx2,fma")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

/// dst[i·NR + j] = src[j][p + i] for i, j < 8: eight values of eight columns, as rows.
///
/// # Safety
/// The CPU must support AVX2 and FMA; each `src[j]` must be readable for 8 values from `p`, and `dst` writable for 8 rows of NR values.
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose_columns(src: [*const f32; 8], p: usize, dst: *mut f32) {
    // SAFETY: the loads and stores are those the contract allows.
    unsafe {
        let rows = transpose8(std::array::from_fn(|j| _mm256_loadu_ps(src[j].add(p))));
        for (i, row) in rows.iter().enumerate() {
            _mm256_storeu_ps(dst.add(i * NR), *row);
        }
    }
}

/// dst[q·MR + i] = src[i][p + q] for i < MR, q < 8, and two more values after the last: each
/// 8-wide store spills into the next column's slot, which the next store overwrites.
///
/// # Safety
/// The CPU must support AVX2 and FMA; each `src[i]` must be readable for 8 values from `p`, and `dst` writable for 8 × MR values and SPILL after them.
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose_rows(src: [*const f32; MR], p: usize, dst: *mut f32) {
    // SAFETY: the loads and stores are those the contract allows.
    unsafe {
        let zero = _mm256_setzero_ps();
        let rows = transpose8(std::array::from_fn(|i| {
            if i < MR {
                _mm256_loadu_ps(src[i].add(p))
            } else {
                zero
            }
        }));
        for (q, row) in rows.iter().enumerate() {
            _mm256_storeu_ps(dst.add(q * MR), *row);
        }
    }
}

/// A partial tile of `size` rows × columns: the kernel's full tile in a scratch block, then its
/// valid part.
///
/// # Safety
/// As [`kernel`], with `c` writable for `rows` × `cols` values (row stride `ldc`) only.
unsafe fn edge(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    add: bool,
    (mr, nr): (usize, usize),
) {
    // SAFETY: the kernel writes its full tile into the local scratch block, and only the valid `rows` × `cols` part is copied to `c`, as the contract allows.
    unsafe {
        let mut tile = [0f32; MR * NR];
        kernel(kc, a, b, tile.as_mut_ptr(), NR, false);
        for i in 0..mr {
            for j in 0..nr {
                let c = c.add(i * ldc + j);
                *c = if add {
                    *c + tile[i * NR + j]
                } else {
                    tile[i * NR + j]
                };
            }
        }
    }
}

/// c [MR × NR] (row stride ldc) = (c if `add`) + a·b over kc, with a and b packed panels.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `a` must be readable for `kc` × MR values, `b` for `kc` × NR values, and `c` readable and writable for MR rows of NR values with row stride `ldc`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, add: bool) {
    // SAFETY: the loads and stores are those the contract allows.
    unsafe {
        // The result tile is read at the end; fetching it now hides the misses behind the products.
        for i in 0..MR {
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + NR - 1) as *const i8);
        }
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        }
        for (i, row) in acc.iter().enumerate() {
            let c = c.add(i * ldc);
            let (mut lo, mut hi) = (row[0], row[1]);
            if add {
                lo = _mm256_add_ps(lo, _mm256_loadu_ps(c));
                hi = _mm256_add_ps(hi, _mm256_loadu_ps(c.add(8)));
            }
            _mm256_storeu_ps(c, lo);
            _mm256_storeu_ps(c.add(8), hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small integers: every partial sum is exact in f32, so any summation order gives the same
    /// bits and results compare with `==`.
    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7 + seed * 13) % 11) as f32 - 5.0)
            .collect()
    }

    /// A [rows × cols] view of `data` in one of three layouts: row-major, column-major, or rows
    /// and columns both spaced out (every other value, a padded row stride).
    fn view(data: &[f32], rows: usize, cols: usize, layout: usize) -> Mat<'_> {
        match layout {
            0 => Mat::new(data, rows, cols, cols, 1),
            1 => Mat::new(data, rows, cols, 1, rows),
            _ => Mat::new(data, rows, cols, 2 * cols + 3, 2),
        }
    }

    fn extent(rows: usize, cols: usize, layout: usize) -> usize {
        if layout == 2 {
            rows * (2 * cols + 3)
        } else {
            rows * cols
        }
    }

    fn check(m: usize, k: usize, n: usize, lhs_layout: usize, rhs_layout: usize, threads: usize) {
        let a = values(extent(m, k, lhs_layout), 1);
        let b = values(extent(k, n, rhs_layout), 2);
        let (lhs, rhs) = (view(&a, m, k, lhs_layout), view(&b, k, n, rhs_layout));
        // A destination wider than the result: the columns past n must stay untouched.
        let ld = n + 5;
        for accumulate in [false, true] {
            let mut dst = values(m * ld, 3);
            let before = dst.clone();
            // SAFETY: supported (checked above); `dst` holds m rows of `ld` values.
            unsafe { product(dst.as_mut_ptr(), ld, accumulate, lhs, rhs, threads) };
            for i in 0..m {
                for j in 0..ld {
                    let expected = if j < n {
                        // SAFETY: i < m, p < k, j < n: inside both views.
                        let sum: f32 = (0..k).map(|p| unsafe { lhs.at(i, p) * rhs.at(p, j) }).sum();
                        sum + if accumulate { before[i * ld + j] } else { 0.0 }
                    } else {
                        before[i * ld + j]
                    };
                    assert_eq!(
                        dst[i * ld + j], expected,
                        "[{m}×{k}]·[{k}×{n}], layouts {lhs_layout}/{rhs_layout}, {threads} threads, \
                         accumulate {accumulate}, at ({i}, {j})"
                    );
                }
            }
        }
    }

    #[test]
    fn products_match_the_definition_in_every_layout_and_blocking() {
        if !supported() {
            return;
        }
        // Shapes below, at and across the tile (6 × 16), row block (MC), inner block (KC) and
        // transpose (8) sizes, on one thread and split over rows or over columns.
        let shapes = [
            (1, 1, 1),
            (5, 7, 3),
            (6, 8, 16),
            (13, 17, 29),
            (37, 330, 33),
            (130, 9, 50),
            (7, 700, 200),
            (250, 64, 18),
        ];
        for &(m, k, n) in &shapes {
            for lhs_layout in 0..3 {
                for rhs_layout in 0..3 {
                    for threads in [1, 2] {
                        check(m, k, n, lhs_layout, rhs_layout, threads);
                    }
                }
            }
        }
    }

    #[test]
    fn wide_products_cross_the_column_block() {
        if !supported() {
            return;
        }
        check(3, 20, NC + 37, 0, 1, 2);
        check(3, 20, NC + 37, 0, 0, 1);
    }

    #[test]
    fn an_empty_inner_dimension_gives_zeros_or_leaves_the_sum() {
        if !supported() {
            return;
        }
        let (a, b) = ([0f32; 0], [0f32; 0]);
        let (lhs, rhs) = (Mat::new(&a, 2, 0, 0, 1), Mat::new(&b, 0, 3, 3, 1));
        let mut dst = vec![7f32; 6];
        // SAFETY: supported (checked above); `dst` holds the 2 × 3 result.
        unsafe { product(dst.as_mut_ptr(), 3, true, lhs, rhs, 2) };
        assert_eq!(dst, vec![7.0; 6]);
        // SAFETY: as above.
        unsafe { product(dst.as_mut_ptr(), 3, false, lhs, rhs, 2) };
        assert_eq!(dst, vec![0.0; 6]);
    }
}
