//! What /proc says about the server under test: its CPU time, its resident
//! memory, and the kernel's drop counter for its UDP sockets (a UDP server
//! looks 100% busy whether or not it keeps up; the drop counter tells).

use std::fs;

/// User + system CPU seconds of process `pid`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parens.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Sum of the drop counters of every UDP socket bound to local `port`
/// (IPv4 and IPv6 tables).
pub fn udp_drops(port: u16) -> u64 {
    let mut total = 0;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        total += drops_in(&text, port);
    }
    total
}

fn drops_in(table: &str, port: u16) -> u64 {
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            if !local.ends_with(&want) {
                return None;
            }
            f.last()?.parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_udp() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 0100007F:1B39 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 ffff 5\n\
  2: 0100007F:1B39 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 ffff 7\n\
  3: 0100007F:1B3A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 ffff 9\n";
        assert_eq!(drops_in(t, 6969), 12);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(rss_bytes(me).unwrap() > 0);
    }
}
