//! loadgen: a BEP 15 load generator that measures the tracker, not itself.
//!
//! One pinned thread sends batched requests (sendmmsg) from many loopback
//! source addresses and reads replies with recvmmsg. Closed loop finds the
//! maximum throughput; open loop offers a fixed rate and measures latency
//! from each request's scheduled send time; `once` announces every peer
//! exactly once (to fill swarms for memory measurements).

mod driver;
mod http_driver;
mod procfs;
mod workload;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use driver::{Mode, RunConfig};
use workload::{PEERS_PER_SOURCE, Workload, WorkloadConfig};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Protocol {
    /// BEP 15 over UDP, batched with sendmmsg/recvmmsg.
    Udp,
    /// BEP 3 / 48 over keep-alive, pipelined HTTP/1.1 connections.
    Http,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum ModeArg {
    /// Maximum throughput with a bounded number of requests in flight.
    Closed,
    /// A fixed offered rate (--rate); latency from the scheduled send time.
    Open,
    /// Announce every peer once (event started), then stop.
    Once,
}

/// Load generator for BEP 15 UDP trackers (loopback only).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Print the man page (roff) and exit (the Debian package installs it
    /// as ringtracker-loadgen(1)).
    #[arg(long)]
    print_man: bool,
    /// The tracker (must be a 127.0.0.0/8 address).
    #[arg(long, default_value = "127.0.0.1:6969")]
    target: SocketAddr,
    #[arg(long, value_enum, default_value = "closed")]
    mode: ModeArg,
    /// UDP (one socket per source address) or HTTP (one keep-alive
    /// connection per source address, pipelined).
    #[arg(long, value_enum, default_value = "udp")]
    protocol: Protocol,
    /// Offered requests per second (open loop).
    #[arg(long, default_value_t = 100_000.0)]
    rate: f64,
    /// Requests in flight (closed loop and once).
    #[arg(long, default_value_t = 256)]
    inflight: usize,
    /// Seconds measured (after the warm-up). For `once`, the most it may take.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds sent but not measured first.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// A request without a reply after this many milliseconds is lost.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Open loop: sleep until the next send is due (or a reply arrives)
    /// instead of polling, so two load generators can share a core (make
    /// soak). Off by default: polling wakes on a reply soonest.
    #[arg(long)]
    idle_wait: bool,
    /// Requests per sendmmsg / replies per recvmmsg.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Torrents (info hashes) in the workload.
    #[arg(long, default_value_t = 1_000_000)]
    torrents: u32,
    /// Peers in the workload, each pinned to one torrent and one address.
    #[arg(long, default_value_t = 2_000_000)]
    peers: u32,
    /// Zipf exponent of torrent popularity: a few huge swarms, a long tail.
    /// 0 gives every torrent exactly peers/torrents peers.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Share of peers that are seeders.
    #[arg(long, default_value_t = 0.25)]
    seeders: f64,
    #[arg(long, default_value_t = 50)]
    numwant: i32,
    /// Share of requests that are scrapes.
    #[arg(long, default_value_t = 0.0)]
    scrape_share: f64,
    /// Info hashes per scrape.
    #[arg(long, default_value_t = 4)]
    scrape_hashes: usize,
    /// Weights of events none,started,completed,stopped.
    #[arg(long, default_value = "94,3,1,2", value_parser = parse_events)]
    events: [u32; 4],
    /// Source addresses (one socket each); raised to fit 64000 peers each.
    #[arg(long, default_value_t = 64)]
    sources: u32,
    /// First source address; the others follow it.
    #[arg(long, default_value = "127.16.0.1")]
    first_source: Ipv4Addr,
    /// Seed for info hashes and peer placement (same seed, same workload).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Pin loadgen to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Server process to watch (CPU per reply, resident memory).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write the workload's info hashes (hex, one per line) and exit: an
    /// opentracker whitelist.
    #[arg(long, value_name = "FILE")]
    write_hashes: Option<PathBuf>,
    /// Private-tracker load: peer k announces with passkey k mod N (in the
    /// HTTP path, or UDP URLData) and growing uploaded/downloaded totals.
    /// 0: no passkeys.
    #[arg(long, default_value_t = 0)]
    passkeys: u32,
    /// Write the workload's passkeys (one per line) and exit.
    #[arg(long, value_name = "FILE")]
    write_passkeys: Option<PathBuf>,
}

fn parse_events(s: &str) -> Result<[u32; 4], String> {
    let parts: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>().map_err(|e| format!("{p:?}: {e}")))
        .collect::<Result<_, _>>()?;
    parts
        .try_into()
        .map_err(|_| "four weights: none,started,completed,stopped".to_string())
}

#[derive(serde::Serialize)]
struct Report {
    protocol: Protocol,
    mode: ModeArg,
    target: SocketAddr,
    offered_rate: Option<f64>,
    inflight: Option<usize>,
    measured_seconds: f64,
    /// Replies on time (within the timeout) to requests scheduled in the
    /// measured window, per second.
    replies_per_second: f64,
    /// Every valid reply that arrived during the measured window, on time
    /// or late, per second: what the server delivered (under overload the
    /// on-time figure can be far lower).
    goodput_per_second: f64,
    /// Requests sent per second over the whole run (what was offered).
    sent_per_second: f64,
    counts: driver::Counts,
    latency_us: Latency,
    max_lag_us: u64,
    server: Option<ServerReport>,
}

#[derive(serde::Serialize)]
struct Latency {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

#[derive(serde::Serialize)]
struct ServerReport {
    pid: u32,
    cpu_seconds: f64,
    cpu_us_per_reply: f64,
    rss_bytes: u64,
    /// Datagrams the kernel dropped at the server's sockets during the run.
    socket_drops: u64,
}

fn pin(cpu: usize) -> Result<(), String> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity get
    // a valid pointer and size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot pin to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

struct Bar(ProgressBar);

impl driver::Progress for Bar {
    fn tick(&mut self, elapsed: Duration, replies: u64) {
        self.0.set_position(elapsed.as_millis() as u64);
        let secs = elapsed.as_secs_f64().max(1e-3);
        self.0
            .set_message(format!("{replies} replies, {:.0}/s", replies as f64 / secs));
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_man {
        use clap::CommandFactory;
        let command = Args::command().name("ringtracker-loadgen");
        return match clap_mangen::Man::new(command).render(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if !args.target.ip().is_loopback() || !args.target.is_ipv4() {
        return Err(format!(
            "refusing target {}: loadgen only sends to IPv4 loopback (127.0.0.0/8)",
            args.target
        ));
    }
    if !args.first_source.is_loopback() {
        return Err(format!(
            "source {} is not a loopback address",
            args.first_source
        ));
    }
    if let Some(cpu) = args.cpu {
        pin(cpu)?;
    }
    let sources = args
        .sources
        .max(args.peers.div_ceil(PEERS_PER_SOURCE))
        .max(1);
    let last = u32::from(args.first_source) + sources - 1;
    if last >> 24 != 127 {
        return Err("source addresses would leave 127.0.0.0/8".into());
    }
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let workload = Workload::new(
        WorkloadConfig {
            torrents: args.torrents,
            peers: args.peers,
            zipf: args.zipf,
            seeder_share: args.seeders,
            numwant: args.numwant,
            scrape_share: args.scrape_share,
            scrape_hashes: args.scrape_hashes.clamp(1, 74),
            events: args.events,
            sources,
            seed: args.seed,
            passkeys: args.passkeys,
        },
        &mut rng,
    );
    if let Some(path) = &args.write_passkeys {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
        );
        for n in 0..args.passkeys {
            let key = workload::passkey_of(n);
            f.write_all(&key)
                .and_then(|()| writeln!(f))
                .map_err(|e| e.to_string())?;
        }
        f.flush().map_err(|e| e.to_string())?;
        return Ok(());
    }
    if let Some(path) = &args.write_hashes {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
        );
        for t in 0..args.torrents {
            let h = workload.info_hash(t);
            let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(f, "{hex}").map_err(|e| e.to_string())?;
        }
        f.flush().map_err(|e| e.to_string())?;
        return Ok(());
    }

    let mode = match args.mode {
        ModeArg::Closed => Mode::Closed {
            inflight: args.inflight,
        },
        ModeArg::Open => Mode::Open { rate: args.rate },
        ModeArg::Once => Mode::Once {
            inflight: args.inflight,
        },
    };
    let warmup = if args.mode == ModeArg::Once {
        0.0
    } else {
        args.warmup
    };
    if args.idle_wait {
        // Sleeps end on time, not up to 50 µs late (the default slack).
        // SAFETY: PR_SET_TIMERSLACK takes one integer argument.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    }
    let cfg = RunConfig {
        target: args.target,
        mode,
        warmup: Duration::from_secs_f64(warmup),
        duration: Duration::from_secs_f64(args.duration),
        timeout: Duration::from_millis(args.timeout_ms),
        batch: args.batch.clamp(1, 1024),
        first_source: args.first_source,
        idle_wait: args.idle_wait,
    };

    let bar = ProgressBar::with_draw_target(
        Some(((warmup + args.duration) * 1000.0) as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {elapsed} {msg}").expect("valid template"),
    );
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let cpu_before = args.server_pid.and_then(procfs::cpu_seconds);
    let drops_before = procfs::udp_drops(args.target.port());
    let mut progress = Bar(bar);
    let result = match args.protocol {
        Protocol::Udp => driver::run(&cfg, &workload, &mut rng, &mut progress),
        Protocol::Http => http_driver::run(&cfg, &workload, &mut rng, &mut progress),
    }
    .map_err(|e| e.to_string())?;
    progress.0.finish_and_clear();
    let drops = procfs::udp_drops(args.target.port()).saturating_sub(drops_before);

    let server = args.server_pid.map(|pid| {
        let cpu = match (cpu_before, procfs::cpu_seconds(pid)) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        ServerReport {
            pid,
            cpu_seconds: cpu,
            cpu_us_per_reply: cpu * 1e6 / result.counts.replies_total.max(1) as f64,
            rss_bytes: procfs::rss_bytes(pid).unwrap_or(0),
            socket_drops: drops,
        }
    });
    let c = &result.counts;
    let measured = result.measured.as_secs_f64().max(1e-9);
    let good = c.announces + c.scrapes + c.connects;
    let h = &result.latency_us;
    let report = Report {
        protocol: args.protocol,
        mode: args.mode,
        target: args.target,
        offered_rate: (args.mode == ModeArg::Open).then_some(args.rate),
        inflight: (args.mode != ModeArg::Open).then_some(args.inflight),
        measured_seconds: measured,
        replies_per_second: good as f64 / measured,
        goodput_per_second: c.arrived as f64 / measured,
        sent_per_second: c.sent as f64 / (measured + warmup).max(1e-9),
        counts: c.clone(),
        latency_us: Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        },
        max_lag_us: result.max_lag.as_micros() as u64,
        server,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialisable")
        );
    } else {
        print_table(&report, drops);
    }
    Ok(())
}

fn print_table(r: &Report, drops: u64) {
    let c = &r.counts;
    let what = match r.mode {
        ModeArg::Closed => format!("closed loop, {} in flight", r.inflight.unwrap_or(0)),
        ModeArg::Open => format!(
            "open loop at {:.0} requests/s",
            r.offered_rate.unwrap_or(0.0)
        ),
        ModeArg::Once => "every peer announces once".to_string(),
    };
    println!("loadgen: {:?} {what}, target {}", r.protocol, r.target);
    println!("  measured              {:>12.2} s", r.measured_seconds);
    println!(
        "  goodput/s             {:>12.0}  (valid replies that arrived, on time or late)",
        r.goodput_per_second
    );
    println!(
        "  on time/s             {:>12.0}  (replied within the timeout)",
        r.replies_per_second
    );
    println!("  sent/s                {:>12.0}", r.sent_per_second);
    println!(
        "  on time               {:>12}  (announce {}, scrape {}, connect {})",
        c.announces + c.scrapes + c.connects,
        c.announces,
        c.scrapes,
        c.connects
    );
    println!("  sent                  {:>12}", c.sent);
    println!(
        "  lost / late           {:>12}  / {}   (no reply within the timeout / replied after it)",
        c.lost, c.late
    );
    println!("  errors / invalid      {:>12}  / {}", c.errors, c.invalid);
    if c.overrun > 0 {
        println!(
            "  generator overrun     {:>12}  (the schedule outran free slots or the socket)",
            c.overrun
        );
    }
    let l = &r.latency_us;
    println!(
        "  latency (µs)          p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        l.p50, l.p90, l.p99, l.p999, l.max
    );
    if r.mode == ModeArg::Open {
        println!("  generator max lag     {:>12} µs", r.max_lag_us);
    }
    match &r.server {
        Some(s) => println!(
            "  server pid {}: cpu {:.2} s, {:.2} µs per reply, rss {:.1} MB, socket drops {}{}",
            s.pid,
            s.cpu_seconds,
            s.cpu_us_per_reply,
            s.rss_bytes as f64 / 1e6,
            s.socket_drops,
            if s.socket_drops > 0 {
                " (server saturated)"
            } else {
                ""
            }
        ),
        None => println!(
            "  server socket drops   {:>12}{}",
            drops,
            if drops > 0 {
                "  (server saturated)"
            } else {
                ""
            }
        ),
    }
}
