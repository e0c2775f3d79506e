//! The process's own figures for `process_*` (the Prometheus client convention), from Linux's
//! `/proc/self`: CPU time, resident memory, open descriptors, threads, start time. Elsewhere,
//! nothing (the series stay at zero).

/// One reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub open_fds: u64,
    pub threads: u64,
    pub start_time: f64,
}

pub fn read() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<u64>()
        .ok()?;
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    parse_stat(&stat, ticks, page, btime).map(|mut p| {
        // The directory's own descriptor, open while it is read.
        p.open_fds = fds.saturating_sub(1);
        p
    })
}

/// `/proc/self/stat`: the fields after the command name (which may hold spaces and
/// parentheses, so the last `)` ends it): utime 14, stime 15, num_threads 20, starttime 22,
/// rss 24 (1-based, as proc(5) numbers them).
fn parse_stat(stat: &str, ticks: f64, page: u64, btime: u64) -> Option<Process> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Process {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        threads: field(20)?,
        start_time: btime as f64 + field(22)? as f64 / ticks,
        rss_bytes: field(24)? * page,
        open_fds: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_a_strange_name_parses() {
        let stat = "4242 (sg (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 \
                    1000 123456 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let p = parse_stat(stat, 100.0, 4096, 1_700_000_000).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.threads, 7);
        assert_eq!(p.start_time, 1_700_000_010.0);
        assert_eq!(p.rss_bytes, 300 * 4096);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads() {
        let p = read().unwrap();
        assert!(p.rss_bytes > 0 && p.open_fds > 0 && p.threads > 0, "{p:?}");
        assert!(p.start_time > 1_600_000_000.0, "{p:?}");
    }
}
