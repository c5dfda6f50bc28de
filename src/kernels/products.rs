//! Products of strided f32 matrix views ([`super::mat`]): lethe's own packed kernels
//! ([`super::sgemm`]) on x86-64 CPUs with AVX2 and FMA, the gemm crate (candle's) elsewhere. The
//! fused kernels multiply heads, transposes and weight views in place, where candle would first
//! copy each operand into a contiguous tensor.

use super::mat::{Mat, Threads};

/// dst [lhs.rows × rhs.cols], `dst_rs` values from row to row, = (dst if `accumulate`) + lhs·rhs.
///
/// # Safety
/// `dst` must be valid for writes (and reads when accumulating) over that extent, and no other
/// thread may touch it meanwhile.
///
/// # Panics
/// When the inner dimensions differ.
pub unsafe fn product_to(
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    threads: Threads,
) {
    assert_eq!(lhs.cols, rhs.rows, "inner dimensions of a product");
    #[cfg(target_arch = "x86_64")]
    if super::sgemm::supported() {
        let threads = match threads {
            Threads::This => 1,
            Threads::All => rayon::current_num_threads(),
        };
        // SAFETY: `supported` holds; the views were bounds-checked when made, and `dst` is valid
        // and unshared per this function's contract.
        return unsafe { super::sgemm::product(dst, dst_rs, accumulate, lhs, rhs, threads) };
    }
    let parallelism = match threads {
        Threads::This => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: the strides and extents passed are those of the bounds-checked views, and `dst` is
    // valid and unshared per this function's contract.
    unsafe {
        gemm::gemm(
            lhs.rows,
            rhs.cols,
            lhs.cols,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// lhs·rhs as a new row-major buffer. The buffer is not zeroed first (that would be one more
/// pass over memory): the product writes every element.
pub fn product(lhs: Mat, rhs: Mat, threads: Threads) -> Vec<f32> {
    let len = lhs.rows * rhs.cols;
    if lhs.cols == 0 {
        return vec![0.0; len];
    }
    let mut out: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: `out` has room for the whole [rows × cols] result, which gemm writes in full
    // when it does not accumulate and the inner dimension is not empty; only then is the
    // length set.
    unsafe {
        product_to(out.as_mut_ptr(), rhs.cols, false, lhs, rhs, threads);
        out.set_len(len);
    }
    out
}

/// dst [lhs.rows × rhs.cols], row-major, += lhs·rhs.
///
/// # Panics
/// When `dst` does not have that many values.
pub fn accumulate(dst: &mut [f32], lhs: Mat, rhs: Mat, threads: Threads) {
    assert_eq!(dst.len(), lhs.rows * rhs.cols, "destination of a product");
    // SAFETY: `dst` is an exclusive borrow of exactly the result's extent.
    unsafe { product_to(dst.as_mut_ptr(), rhs.cols, true, lhs, rhs, threads) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_of_views_match_the_definition() {
        // a [2×3] and b [3×2] stored transposed, inside larger buffers.
        let a = [1.0, 2.0, 3.0, 0.0, 4.0, 5.0, 6.0];
        let b_t = [1.0, 0.0, -1.0, 2.0, 1.0, 0.5];
        let a = Mat::rows(&a, 2, 3, 4);
        let b = Mat::rows(&b_t, 2, 3, 3).t();
        let ab = product(a, b, Threads::This);
        assert_eq!(ab, vec![-2.0, 5.5, -2.0, 16.0]);
        let mut acc = ab.clone();
        accumulate(&mut acc, a, b, Threads::All);
        assert_eq!(acc, vec![-4.0, 11.0, -4.0, 32.0]);
    }

    #[test]
    #[should_panic(expected = "exceeds")]
    fn a_view_beyond_its_slice_is_refused() {
        Mat::rows(&[0.0; 5], 2, 3, 3);
    }
}
