//! Strided views of f32 matrices: what the products read. Constructors check every element's
//! place, so the products that take these views stay in bounds.

use std::marker::PhantomData;

/// A `rows` × `cols` matrix inside a slice, `rs` values from one row to the next and `cs` from
/// one column to the next. Constructors check that every element lies inside the slice, so the
/// products below are safe to call.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub(super) ptr: *const f32,
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) rs: isize,
    pub(super) cs: isize,
    data: PhantomData<&'a [f32]>,
}

impl<'a> Mat<'a> {
    /// The matrix at the start of `data` with the given strides.
    ///
    /// # Panics
    /// When an element would lie outside `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Mat<'a> {
        let empty = rows == 0 || cols == 0;
        assert!(
            empty || (rows - 1) * rs + (cols - 1) * cs < data.len(),
            "a {rows}×{cols} view with strides ({rs}, {cs}) exceeds its {} values",
            data.len()
        );
        Mat {
            ptr: data.as_ptr(),
            rows,
            cols,
            rs: rs as isize,
            cs: cs as isize,
            data: PhantomData,
        }
    }

    /// Rows of `cols` consecutive values, `row_stride` apart.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Mat<'a> {
        Mat::new(data, rows, cols, row_stride, 1)
    }

    /// The transpose: the same values, strides swapped.
    pub fn t(self) -> Mat<'a> {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// Where a product goes: on this thread (inside a parallel task) or spread over rayon's threads.
#[derive(Clone, Copy, PartialEq)]
pub enum Threads {
    This,
    All,
}
