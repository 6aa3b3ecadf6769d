//! The node's measured CPU load: `/proc/stat` sampled every [`SAMPLE_EVERY`], smoothed, as the
//! share of all cores that is idle. The egress worker weighs its psrpc affinity with it, so
//! livekit-server's StartEgress goes to the least loaded worker.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Weight of the newest sample in the moving average (≈ 3 s of memory at 1 Hz).
const SMOOTHING: f32 = 0.3;

pub struct CpuLoad {
    /// The smoothed idle share (0…1) as f32 bits; 1.0 until measured.
    idle: AtomicU32,
}

/// Busy and total jiffies of all cores, from the first line of /proc/stat.
fn read_cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut f = line.split_whitespace();
    if f.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = f.map(|x| x.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

impl CpuLoad {
    /// Starts sampling in the background (for as long as the runtime runs).
    pub fn start() -> Arc<Self> {
        let load = Arc::new(Self { idle: AtomicU32::new(1.0f32.to_bits()) });
        let l = Arc::clone(&load);
        tokio::spawn(async move {
            let mut last = read_cpu_times();
            let mut first = true;
            loop {
                tokio::time::sleep(SAMPLE_EVERY).await;
                let now = read_cpu_times();
                if let (Some((b0, t0)), Some((b1, t1))) = (last, now) {
                    if t1 > t0 {
                        let idle = 1.0 - (b1.saturating_sub(b0)) as f32 / (t1 - t0) as f32;
                        let old = f32::from_bits(l.idle.load(Ordering::Relaxed));
                        let new = if first { idle } else { old + SMOOTHING * (idle - old) };
                        l.idle.store(new.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
                        first = false;
                    }
                }
                last = now;
            }
        });
        load
    }

    /// The share of the node's CPU that is idle, smoothed (0…1).
    pub fn idle_share(&self) -> f32 {
        f32::from_bits(self.idle.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let (busy, total) = parse_cpu_line("cpu  100 5 50 800 20 3 2 0 0 0").unwrap();
        assert_eq!((busy, total), (160, 980));
        assert!(parse_cpu_line("cpu0 1 2 3 4").is_none());
        assert!(read_cpu_times().is_some(), "this machine has /proc/stat");
    }
}
