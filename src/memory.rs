//! How the process asks glibc's allocator to treat large buffers.
//!
//! By default glibc gives the free memory at the top of a heap back to the kernel as soon as
//! more than a threshold of it is free (128 KiB at first, then twice the largest mapped block
//! it has freed), and it serves blocks above a moving threshold with their own `mmap`.
//! A gateway copies each request body (up to `server.max_body`) a few times, so every large
//! request handed its buffers back to the kernel and page-faulted fresh ones in: with large
//! bodies, page faults and `madvise` were a large share of orgate's CPU (BENCHMARKS.md). The heaps
//! now keep up to [`TRIM_THRESHOLD`] free at their top, and blocks below [`MMAP_THRESHOLD`]
//! come from them.

/// Free memory a heap keeps at its top before it gives the rest back to the kernel.
pub(crate) const TRIM_THRESHOLD: usize = 32 << 20;
/// Blocks at least this large get a mapping of their own. Setting one threshold fixes the
/// other, so this is glibc's own ceiling for its moving one.
pub(crate) const MMAP_THRESHOLD: usize = 32 << 20;

/// Applies the settings above, once, at start. Whether the allocator took them: false where
/// it is not glibc's, which has its own ways.
pub(crate) fn keep_large_buffers() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    return set_glibc_thresholds();
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    return false;
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_glibc_thresholds() -> bool {
    [
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    ]
    .into_iter()
    .all(|(param, value)| {
        let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes plain integers and only changes allocator parameters, under
        // glibc's own locks. A refusal (0) leaves the defaults, which work.
        unsafe { libc::mallopt(param, value) == 1 }
    })
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Minor page faults of the calling thread so far (`minflt`, field 10 of its stat line).
    fn minor_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) may hold spaces; the fields after it do not.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(7).unwrap().parse().unwrap()
    }

    /// A request's worth of large buffers: a body read, its rewrite, and a read buffer.
    fn body_sized_churn() {
        for _ in 0..20 {
            let buffers: Vec<Vec<u8>> = (0..4).map(|_| vec![1u8; 1 << 20]).collect();
            std::hint::black_box(&buffers);
        }
    }

    #[test]
    fn freed_body_buffers_are_reused_without_page_faults() {
        assert!(super::keep_large_buffers());
        body_sized_churn(); // the heap grows once
        let before = minor_faults();
        body_sized_churn();
        let faults = minor_faults() - before;
        // Untuned, glibc trims the freed 4 MiB each time and faults ~1,000 pages back in.
        assert!(faults < 100, "{faults} page faults reusing 1 MiB buffers");
    }
}
