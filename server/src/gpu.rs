//! GPU detection. With the `gpu` feature, cudarc loads libcuda at run time,
//! so the same binary runs on machines without CUDA (0 GPUs there).

/// Number of CUDA devices visible to this process (0 when CUDA is absent).
pub fn detect_gpus() -> usize {
    if let Ok(v) = std::env::var("EMBER_NUM_GPUS") {
        if let Ok(n) = v.parse() {
            return n;
        }
    }
    detect_with_cudarc()
}

#[cfg(feature = "gpu")]
fn detect_with_cudarc() -> usize {
    // SAFETY: is_culib_present only tries to dlopen the library.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return 0;
    }
    // cudarc panics if a symbol is missing from an unusual libcuda: treat that
    // as "no GPUs" rather than crashing the daemon.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let count = std::panic::catch_unwind(|| {
        cudarc::driver::result::init().ok()?;
        cudarc::driver::result::device::get_count().ok()
    });
    std::panic::set_hook(previous);
    match count {
        Ok(Some(n)) if n > 0 => n as usize,
        _ => 0,
    }
}

#[cfg(not(feature = "gpu"))]
fn detect_with_cudarc() -> usize {
    0
}

#[cfg(test)]
mod tests {
    #[test]
    fn detection_never_panics() {
        // On machines without CUDA this is 0; with CUDA, the device count.
        let _ = super::detect_gpus();
    }
}
