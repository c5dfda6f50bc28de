//! Process-wide settings for training on the CPU, applied once at start-up.

/// Keeps freed tensor buffers for reuse instead of returning them to the kernel. A training step
/// allocates and frees the same few hundred activation-sized buffers every step; by default glibc
/// maps each buffer above 128 KiB freshly and unmaps it on free, so every step pays a page fault
/// (and the kernel's zeroing) per 4 KiB of activations. Buffers come from the heap instead, with
/// no size limit: a language model's logits (50 MiB for 256 rows of SmolLM2's vocabulary) are
/// beyond the largest mapping threshold glibc accepts. Peak memory is unchanged: the buffers are
/// reused, not added. Also stops candle's elementwise thread pool from spinning between
/// operations, where it would take a core from the matrix products that run on rayon's threads.
pub fn tune_for_training() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any worker thread starts.
    unsafe {
        // 32 MiB is the largest threshold glibc accepts (4 MiB × sizeof(long)); with no
        // mappings allowed at all, larger buffers come from the heap too.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "1000");
    }
}

/// Returns the heap memory that training freed to the kernel. With mappings off, the step buffers
/// stay in the heap for reuse; once training ends, the phases that follow (metrics, export, the
/// ONNX Runtime check) would otherwise add their peak on top of them.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only gives free heap pages back to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
