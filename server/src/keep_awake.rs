//! Keeps this machine's CPUs awake for a moment after local traffic, so that
//! the next hop of a sync call does not wait for an idle CPU to wake up.
//!
//! A sync task or actor call from a local driver is four wake-ups in a row
//! (driver → node → worker → node → driver). When the CPU a process is
//! woken on has gone idle, the wake-up costs the time that CPU needs to leave
//! its idle state: in a VM whose guest does not poll before halting (as on
//! the machines ember is developed on), that is a trip through the
//! hypervisor, about 50 µs, against 3–5 µs on a CPU that is running
//! something (`benches/hardware.py` measures both: 100+ µs for a Unix-socket
//! round trip between two processes on two CPUs, 12 µs with this module's
//! threads running).
//!
//! So for [`KeepAwake::window`] after the last message on the local socket
//! (2 ms by default), one thread per CPU the node may use spins, under
//! `SCHED_IDLE`: the scheduler runs it only on a CPU that has nothing else
//! to run and preempts it the moment anything else wakes there, so it takes
//! no time from tasks; it only keeps idle CPUs out of their halt. When
//! traffic stops the threads sleep on a condition variable (no CPU at all
//! when idle) until the next message.
//!
//! Where the process may (as root, usually), it does better than spinning:
//! it holds a CPU latency request of 0 µs (`/dev/cpu_dma_latency`, the
//! kernel's PM QoS interface) for the window instead, which makes idle CPUs
//! poll in the kernel's idle loop rather than halt. A CPU polling there is
//! idle to the scheduler and is woken by a flag, with no interrupt between
//! CPUs, while a CPU running a spinner has to be interrupted to switch to
//! the woken process: on a VM each such interrupt is a trip through the
//! hypervisor. The request is lifted (back to "no limit") when the window
//! passes and dropped with the process. `EMBER_KEEP_AWAKE_MODE=spin` (or
//! `poll`) chooses; by default `poll` where the device opens, else `spin`.
//!
//! Off (`--keep-awake-us 0` or `EMBER_KEEP_AWAKE_US=0`) when the process
//! runs under a CPU quota (cgroup `cpu.max` or `cpu.cfs_quota_us`): there
//! spinning would spend the quota that tasks need.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Default spinning window after the last local message.
pub const DEFAULT_WINDOW: Duration = Duration::from_micros(2000);

/// Spin iterations between two looks at the clock.
const SPINS_PER_CHECK: u32 = 128;

/// The kernel's CPU latency request device (PM QoS).
const LATENCY_DEVICE: &str = "/dev/cpu_dma_latency";

/// "No limit" for [`LATENCY_DEVICE`] (the kernel's default, 2000 s in µs).
const NO_LATENCY_LIMIT: i32 = 2_000_000_000;

/// How idle CPUs are kept from halting during the window.
#[derive(Debug)]
pub enum Mode {
    /// One `SCHED_IDLE` thread per CPU spins.
    Spin,
    /// One thread holds a 0 µs latency request on this open
    /// [`LATENCY_DEVICE`]: idle CPUs poll in the kernel.
    PollIdle(File),
}

impl Mode {
    /// `EMBER_KEEP_AWAKE_MODE` (`spin` or `poll`), else `poll` where the
    /// latency device opens for writing, else `spin`.
    pub fn choose() -> Mode {
        let wanted = std::env::var("EMBER_KEEP_AWAKE_MODE").unwrap_or_default();
        if wanted == "spin" {
            return Mode::Spin;
        }
        match std::fs::OpenOptions::new().write(true).open(LATENCY_DEVICE) {
            Ok(file) => Mode::PollIdle(file),
            Err(e) => {
                if wanted == "poll" {
                    tracing::warn!(error = %e, "cannot open {LATENCY_DEVICE}: keep-awake threads spin instead");
                }
                Mode::Spin
            }
        }
    }
}

/// The process-wide keeper; [`touch`] is a no-op until [`start`] ran.
static KEEPER: OnceLock<KeepAwake> = OnceLock::new();

#[derive(Debug)]
pub struct KeepAwake {
    epoch: Instant,
    window_us: u64,
    /// Microseconds since `epoch` of the last [`touch`].
    last: AtomicU64,
    /// Set by the spinning threads before they sleep; cleared by the
    /// [`touch`] that wakes them.
    sleeping: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl KeepAwake {
    /// A keeper whose threads (see [`KeepAwake::spawn`]) are asleep until
    /// the first [`KeepAwake::touch`].
    pub fn new(window: Duration) -> Self {
        let window_us = window.as_micros().max(1) as u64;
        let now = Instant::now();
        KeepAwake {
            // `last` (0) counts from `epoch`: one window back, so that the
            // threads' first look finds the window already past.
            epoch: now.checked_sub(window).unwrap_or(now),
            window_us,
            last: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// A thread pinned to `cpu` that spins while traffic is recent.
    pub fn spawn(&'static self, cpu: usize) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name(format!("ember-awake-{cpu}"))
            .stack_size(64 * 1024)
            .spawn(move || self.spin(cpu))
            .map(drop)
    }

    /// Whether the spinning threads are asleep (or about to be).
    pub fn is_sleeping(&self) -> bool {
        self.sleeping.load(Ordering::SeqCst)
    }

    pub fn window(&self) -> Duration {
        Duration::from_micros(self.window_us)
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Microseconds of the window left (0 once it has passed).
    fn left_us(&self) -> u64 {
        let since = self
            .now_us()
            .saturating_sub(self.last.load(Ordering::SeqCst));
        self.window_us.saturating_sub(since)
    }

    fn hot(&self) -> bool {
        self.left_us() > 0
    }

    /// Note traffic: spin for the window from now.
    pub fn touch(&self) {
        self.last.store(self.now_us(), Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
    }

    fn spin(&self, cpu: usize) {
        pin_to(cpu);
        if !set_idle_policy() {
            // At normal priority spinning would take CPU from tasks.
            return;
        }
        loop {
            while self.hot() {
                for _ in 0..SPINS_PER_CHECK {
                    std::hint::spin_loop();
                }
            }
            self.sleep_until_touched();
        }
    }

    /// A thread that holds a 0 µs latency request on `device` while traffic
    /// is recent, and lifts it while asleep.
    pub fn spawn_poll_idle(&'static self, device: File) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("ember-awake-poll".into())
            .stack_size(64 * 1024)
            .spawn(move || self.hold_poll_idle(device))
            .map(drop)
    }

    fn hold_poll_idle(&self, mut device: File) {
        let mut request = |limit_us: i32| {
            // The device takes the limit as a native-endian 32-bit integer.
            if let Err(e) = device.write_all(&limit_us.to_ne_bytes()) {
                tracing::warn!(error = %e, "cannot update the CPU latency request");
            }
        };
        request(NO_LATENCY_LIMIT);
        loop {
            if self.hot() {
                request(0);
                loop {
                    let left = self.left_us();
                    if left == 0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(left.max(50)));
                }
                request(NO_LATENCY_LIMIT);
            }
            self.sleep_until_touched();
        }
    }

    /// Sleep until a [`touch`](Self::touch) (at once if one came since the
    /// caller last found the window past).
    fn sleep_until_touched(&self) {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sleeping.store(true, Ordering::SeqCst);
        // A touch between the caller's last look and the flag saw no
        // sleeper: look again now that the flag is up.
        if self.hot() {
            self.sleeping.store(false, Ordering::SeqCst);
            return;
        }
        while self.sleeping.load(Ordering::SeqCst) {
            guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Start the keeper's threads (see [`Mode::choose`]): one holding the CPU
/// latency request, or one spinning thread per CPU this process may run
/// on; asleep until the first [`touch`]. `window` zero, a CPU quota, or a
/// second call does nothing. Returns whether the threads run.
pub fn start(window: Duration) -> bool {
    if window.is_zero() {
        return false;
    }
    if let Some(why) = cpu_quota() {
        tracing::info!(%why, "keep-awake threads off: the node runs under a CPU quota");
        return false;
    }
    if KEEPER.set(KeepAwake::new(window)).is_err() {
        return false;
    }
    let keeper = KEEPER.get().expect("just set");
    match Mode::choose() {
        Mode::PollIdle(device) => {
            if let Err(e) = keeper.spawn_poll_idle(device) {
                tracing::warn!(error = %e, "cannot start the keep-awake thread");
            }
        }
        Mode::Spin => {
            for cpu in allowed_cpus() {
                if let Err(e) = keeper.spawn(cpu) {
                    tracing::warn!(error = %e, "cannot start a keep-awake thread");
                    break;
                }
            }
        }
    }
    true
}

/// Note local traffic: the CPUs stay awake for the window from now.
#[inline]
pub fn touch() {
    if let Some(keeper) = KEEPER.get() {
        keeper.touch();
    }
}

/// Why spinning would cost tasks CPU time, if it would: a cgroup CPU quota.
fn cpu_quota() -> Option<String> {
    // cgroup v2: "max 100000" is no quota, "200000 100000" is 2 CPUs.
    if let Ok(text) = std::fs::read_to_string("/sys/fs/cgroup/cpu.max") {
        let quota = text.split_whitespace().next().unwrap_or("max");
        if quota != "max" {
            return Some(format!("cgroup cpu.max is {}", text.trim()));
        }
    }
    // cgroup v1: -1 is no quota.
    if let Ok(text) = std::fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") {
        if text.trim() != "-1" {
            return Some(format!("cgroup cpu.cfs_quota_us is {}", text.trim()));
        }
    }
    None
}

/// The CPUs in this process's affinity mask.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, and
    // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: as in allowed_cpus; pid 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// `SCHED_IDLE`: run only where nothing else wants the CPU.
fn set_idle_policy() -> bool {
    // SAFETY: sched_setscheduler reads one sched_param; pid 0 is the
    // calling thread.
    let ok = unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0
    };
    if !ok {
        tracing::info!("keep-awake thread off: cannot set SCHED_IDLE");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn threads_sleep_until_touched_and_again_once_the_window_passes() {
        let keeper: &'static KeepAwake =
            Box::leak(Box::new(KeepAwake::new(Duration::from_millis(5))));
        assert!(
            !keeper.hot(),
            "a new keeper must not spin before any traffic"
        );
        keeper.spawn(allowed_cpus()[0]).unwrap();
        wait_for("the thread to go to sleep", || keeper.is_sleeping());
        for _ in 0..3 {
            keeper.touch();
            assert!(keeper.hot());
            assert!(!keeper.is_sleeping(), "touch must wake the thread");
            wait_for("the thread to sleep after the window", || {
                keeper.is_sleeping()
            });
            assert!(!keeper.hot());
        }
    }

    #[test]
    fn touches_within_the_window_keep_it_hot() {
        let keeper = KeepAwake::new(Duration::from_secs(2));
        keeper.touch();
        std::thread::sleep(Duration::from_millis(1200));
        keeper.touch();
        std::thread::sleep(Duration::from_millis(1200));
        assert!(keeper.hot(), "the window counts from the last touch");
        let short = KeepAwake::new(Duration::from_millis(1));
        short.touch();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!short.hot());
    }

    #[test]
    fn the_affinity_mask_names_at_least_one_cpu() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.iter().all(|&cpu| cpu < libc::CPU_SETSIZE as usize));
    }
}
