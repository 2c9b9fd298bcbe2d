//! Metrics: a sandbox's live figures from the kernel's accounting (its cgroup, its writable
//! layer, its network link), and the node's own in the Prometheus text format.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ai2in_api::SandboxMetrics;
use ai2in_store::Status;

use crate::auth::{Principal, Scope};
use crate::error::NodeError;
use crate::node::Node;
use crate::time::{now_ms, rfc3339};

/// The CPU figure covers at least this long: a sample this recent is compared with the one
/// before it; otherwise the call waits this long for a second sample.
const CPU_WINDOW: Duration = Duration::from_millis(100);
/// Samples older than this are forgotten.
const SAMPLE_TTL: Duration = Duration::from_secs(30);
/// Upper bounds (seconds) of the create-latency histogram's buckets.
const CREATE_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// What the node counts about itself.
#[derive(Default)]
pub(crate) struct NodeMetrics {
    /// Per sandbox: when its CPU time was last read, and the reading.
    cpu_samples: Mutex<HashMap<String, (Instant, u64)>>,
    /// Create latencies: counts per bucket (cumulative at render), sum, count.
    creates: Mutex<(Vec<u64>, f64, u64)>,
    /// API requests by (method, route, status).
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl NodeMetrics {
    /// Records one create that took `elapsed`.
    pub(crate) fn record_create(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut creates = lock(&self.creates);
        if creates.0.is_empty() {
            creates.0 = vec![0; CREATE_BUCKETS.len()];
        }
        if let Some(i) = CREATE_BUCKETS.iter().position(|le| seconds <= *le) {
            creates.0[i] += 1;
        }
        creates.1 += seconds;
        creates.2 += 1;
    }

    /// Stores `cpu_ns` read now for `id`; returns the reading it replaces when that one is
    /// old enough to measure against.
    fn cpu_sample(&self, id: &str, now: Instant, cpu_ns: u64) -> Option<(Instant, u64)> {
        let mut samples = lock(&self.cpu_samples);
        samples.retain(|_, (at, _)| now.duration_since(*at) < SAMPLE_TTL);
        let previous = samples.insert(id.to_string(), (now, cpu_ns));
        previous.filter(|(at, _)| now.duration_since(*at) >= CPU_WINDOW)
    }
}

impl Node {
    /// Live figures of the caller's sandbox `id`.
    pub async fn metrics(&self, caller: &Principal, id: &str) -> Result<SandboxMetrics, NodeError> {
        caller.require(Scope::SandboxesRead)?;
        let record = self.live_record(caller, id)?;
        let cgroups = self.runtime().cgroups();
        let read = || {
            cgroups
                .usage(id)
                .map_err(|e| NodeError::Internal(crate::error::error_chain(&e)))
        };
        let mut usage = read()?;
        let mut now = Instant::now();
        let (since, cpu_before) = match self.metrics_state().cpu_sample(id, now, usage.cpu_ns) {
            Some(previous) => previous,
            None => {
                let first = (now, usage.cpu_ns);
                tokio::time::sleep(CPU_WINDOW).await;
                usage = read()?;
                now = Instant::now();
                self.metrics_state().cpu_sample(id, now, usage.cpu_ns);
                first
            }
        };
        let cpu_count = record.cpu.ceil().max(1.0) as u32;
        let elapsed_ns = now.duration_since(since).as_nanos().max(1) as f64;
        let used = usage.cpu_ns.saturating_sub(cpu_before) as f64;
        let cpu_used_pct = (used / (elapsed_ns * record.cpu) * 100.0).clamp(0.0, 100.0);
        let disk_used_bytes = record.pid.map_or(0, |pid| {
            nix::sys::statvfs::statvfs(format!("/proc/{pid}/root").as_str())
                .map_or(0, |s| (s.blocks() - s.blocks_free()) * s.fragment_size())
        });
        let (net_rx_bytes, net_tx_bytes) = self
            .runtime()
            .network()
            .map_or((0, 0), |net| net.counters(&net.link_name(record.uid_slot)));
        Ok(SandboxMetrics {
            timestamp: rfc3339(now_ms()),
            cpu_count,
            cpu_used_pct: (cpu_used_pct * 100.0).round() / 100.0,
            mem_used_bytes: usage.memory_bytes,
            mem_limit_bytes: record.memory_bytes,
            disk_used_bytes,
            disk_limit_bytes: record.disk_bytes,
            pids: usage.pids,
            net_rx_bytes,
            net_tx_bytes,
        })
    }

    /// Counts one API request.
    pub fn count_request(&self, method: &str, route: &str, status: u16) {
        let key = (method.to_string(), route.to_string(), status);
        *lock(&self.metrics_state().requests).entry(key).or_default() += 1;
    }

    /// The node's metrics in the Prometheus text format (admin only).
    pub fn prometheus(&self, caller: &Principal) -> Result<String, NodeError> {
        caller.require(Scope::Admin)?;
        let mut out = String::new();
        let counts = self.store().count_by_status()?;
        out.push_str("# HELP ai2in_sandboxes Live sandboxes on this node by status.\n");
        out.push_str("# TYPE ai2in_sandboxes gauge\n");
        for status in [
            Status::Starting,
            Status::Pooled,
            Status::Running,
            Status::Paused,
            Status::Stopping,
        ] {
            let n = counts
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "ai2in_sandboxes{{status=\"{}\"}} {n}", status.as_str());
        }
        let (buckets, sum, count) = lock(&self.metrics_state().creates).clone();
        out.push_str(
            "# HELP ai2in_sandbox_create_seconds Time from a create request to a ready sandbox.\n",
        );
        out.push_str("# TYPE ai2in_sandbox_create_seconds histogram\n");
        let mut cumulative = 0;
        for (i, le) in CREATE_BUCKETS.iter().enumerate() {
            cumulative += buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "ai2in_sandbox_create_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "ai2in_sandbox_create_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "ai2in_sandbox_create_seconds_sum {sum}");
        let _ = writeln!(out, "ai2in_sandbox_create_seconds_count {count}");
        out.push_str(
            "# HELP ai2in_http_requests_total API requests by method, route and status.\n",
        );
        out.push_str("# TYPE ai2in_http_requests_total counter\n");
        for ((method, route, status), n) in lock(&self.metrics_state().requests).iter() {
            let _ = writeln!(
                out,
                "ai2in_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        Ok(out)
    }
}
