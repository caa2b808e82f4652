//! Helpers shared by the benchmark examples (`fanout`, `ws_fanout`): percentiles, number
//! formatting, Markdown tables and a description of the machine a run took place on.
//!
//! Not an example itself (a directory without `main.rs`); each example, and the bench that
//! includes it, pulls this in with `#[path]`.

// Each example uses a different subset.
#![allow(dead_code)]

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Formats nanoseconds for a table.
pub fn fmt_ns(ns: u64) -> String {
    let v = ns as f64;
    if v < 1e3 {
        format!("{ns} ns")
    } else if v < 1e6 {
        format!("{:.1} µs", v / 1e3)
    } else if v < 1e9 {
        format!("{:.2} ms", v / 1e6)
    } else {
        format!("{:.2} s", v / 1e9)
    }
}

/// Formats a rate per second for a table.
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

/// Prints a Markdown table; the first `left` columns are left-aligned, the rest right.
pub fn print_table(headers: &[&str], left: usize, rows: &[Vec<String>]) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = w[i] - c.chars().count();
                if i < left {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    let rule: Vec<String> = w
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if i < left {
                format!(":{}", "-".repeat(n + 1))
            } else {
                format!("{}:", "-".repeat(n + 1))
            }
        })
        .collect();
    println!("|{}|", rule.join("|"));
    for r in rows {
        line(r.clone());
    }
}

/// The 1-minute load average (other processes competing for the cores).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// "N cores (CPU model)", from `/proc/cpuinfo`.
pub fn cores_and_cpu() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({cpu})")
}
