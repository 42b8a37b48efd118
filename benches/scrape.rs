//! End-to-end scrape benchmark: a simulated pool of 8 hosts × 250 VMs on loopback, the real
//! `xen-exporter` binary in its own process, and three figures: the scrape's wall time against
//! the time the same `/rrd_updates` bodies take just to download (by a process of its own that
//! does nothing else, as the exporter is one), the exporter's CPU time per
//! scrape, and its peak RSS; beside them, the time a second exporter takes to serve the same
//! exposition from a cached collection, the floor of what follows the last body. Run with
//! `cargo bench --bench scrape` (optionally `-- --hosts N --vms N --scrapes N`, and `--no-gzip`
//! to leave out the gzip scrapes, e.g. when profiling). For A/B comparisons of two builds,
//! `BENCH_EXPORTER=<path>` replaces the exporter under test and `BENCH_EXPORTER_B=<path>` adds
//! a second one scraped in the same rounds (run it twice with the two swapped: the second slot
//! of a round has a bias of its own).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use xen_exporter::config::{Collectors, Endpoint, Mode, PoolConfig, Secret, TlsConfig};
use xen_exporter::sim::{Generation, Sim, SimConfig};
use xen_exporter::xapi::Client;

struct Args {
    hosts: usize,
    vms: usize,
    scrapes: usize,
    gzip: bool,
}

fn args() -> Args {
    let mut args = Args {
        hosts: 8,
        vms: 250,
        scrapes: 20,
        gzip: true,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = || argv.get(i + 1).and_then(|v| v.parse().ok());
        match argv[i].as_str() {
            "--hosts" => args.hosts = next().unwrap_or(args.hosts),
            "--vms" => args.vms = next().unwrap_or(args.vms),
            "--scrapes" => args.scrapes = next().unwrap_or(args.scrapes),
            "--no-gzip" => args.gzip = false,
            _ => {}
        }
        i += 1;
    }
    args
}

/// Field `n` (from 0) of `/proc/<pid>/stat` after the parenthesised command name.
fn stat_field(pid: u32, n: usize) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("procfs");
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    after
        .split(' ')
        .nth(n)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in seconds (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    (stat_field(pid, 11) + stat_field(pid, 12)) as f64 / 100.0
}

/// Minor page faults of a process so far: memory the kernel had to map (and zero) for it.
fn minor_faults(pid: u32) -> u64 {
    stat_field(pid, 7)
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Every host's `/rrd_updates` body fetched concurrently, as one scrape does, and not parsed:
/// how long it took, and how many bytes.
async fn download_all(client: &Client, hosts: &[Endpoint]) -> (Duration, usize) {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let bodies =
        futures::future::join_all(hosts.iter().map(|h| client.rrd_updates(h, deadline))).await;
    let took = started.elapsed();
    (took, bodies.iter().map(|b| b.as_ref().unwrap().len()).sum())
}

/// The bench binary run again with `--download-only <dir> <master URL> <user> <host URL>...`:
/// a process that only downloads. For each line on stdin it fetches every host's
/// `/rrd_updates` concurrently with the exporter's own client, as one scrape would, and
/// answers with a line `<nanoseconds> <bytes>`. The password is read from `<dir>/password`, so
/// that it is not in argv.
async fn download_only(argv: &[String]) {
    let [dir, master, user, hosts @ ..] = argv else {
        panic!("usage: --download-only <dir> <master URL> <user> <host URL>...");
    };
    let dir = std::path::Path::new(dir);
    let config = PoolConfig {
        name: "download-only".into(),
        endpoint: Endpoint::parse(master).unwrap(),
        members: Vec::new(),
        user: user.clone(),
        password: Secret::new(std::fs::read_to_string(dir.join("password")).unwrap()),
        tls: TlsConfig {
            verify: true,
            extra_roots_pem: Some(std::fs::read(dir.join("ca.pem")).unwrap()),
            ..TlsConfig::default()
        },
        mode: Mode::Pool,
        halt_on_no_uuid: false,
        timeout: Duration::from_secs(30),
        collectors: Collectors::default(),
        hash_uuids_key: None,
    };
    let client = Client::new(&config).unwrap();
    let hosts: Vec<Endpoint> = hosts.iter().map(|h| Endpoint::parse(h).unwrap()).collect();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Ok(Some(_)) = lines.next_line().await {
        let (took, bytes) = download_all(&client, &hosts).await;
        let answer = format!("{} {bytes}\n", took.as_nanos());
        stdout.write_all(answer.as_bytes()).await.unwrap();
        stdout.flush().await.unwrap();
    }
    client.logout().await;
}

/// The parent's end of a `--download-only` process.
struct Downloader {
    child: tokio::process::Child,
    input: tokio::process::ChildStdin,
    output: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Downloader {
    fn spawn(sim: &Sim, dir: &std::path::Path, hosts: usize) -> Downloader {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env_clear()
            .arg("--download-only")
            .arg(dir)
            .arg(sim.master_url())
            .arg(sim.username())
            .args((0..hosts).map(|h| sim.host_url(h)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the bench binary again, as a downloader");
        let input = child.stdin.take().unwrap();
        let output = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Downloader {
            child,
            input,
            output,
        }
    }

    /// One download of every host's body: how long it took, and how many bytes.
    async fn download(&mut self) -> (Duration, usize) {
        self.input.write_all(b"go\n").await.unwrap();
        self.input.flush().await.unwrap();
        let line = self
            .output
            .next_line()
            .await
            .unwrap()
            .expect("downloader answers");
        let (nanos, bytes) = line.split_once(' ').unwrap();
        (
            Duration::from_nanos(nanos.parse().unwrap()),
            bytes.parse().unwrap(),
        )
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).is_some_and(|a| a == "--download-only") {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(download_only(&argv[2..]));
        return;
    }
    let args = args();
    // `cargo test --benches` runs bench binaries with --bench absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("scrape bench: run with `cargo bench --bench scrape`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let sim = Sim::start(SimConfig {
        hosts: args.hosts,
        vms_per_host: args.vms,
        generation: Generation::Current,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let dir = std::env::temp_dir().join(format!("xen-exporter-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("password"), sim.password()).unwrap();
    std::fs::write(dir.join("ca.pem"), sim.ca_pem()).unwrap();

    // Baseline: the same bodies, fetched concurrently with the same HTTP stack, not parsed, by
    // a process that does nothing else. The exporter is a process of its own beside the
    // simulator, and so is the downloader: both take their CPU from the simulator the same
    // way. A download from inside this process, whose runtime also runs the simulator, is
    // measured too (the baseline of earlier figures): it is 0.3–2.4 ms quicker in the same
    // rounds, as the client and the simulator hand over work within one runtime.
    let mut downloader = Downloader::spawn(&sim, &dir, args.hosts);
    let config = xen_exporter::simulator_pool(&sim, Mode::Pool, Duration::from_secs(30));
    let client = Client::new(&config).unwrap();
    let hosts: Vec<Endpoint> = (0..args.hosts)
        .map(|h| Endpoint::parse(&sim.host_url(h)).unwrap())
        .collect();
    // Measured in the same rounds as the scrapes, one download before each scrape, so that both
    // medians see the same state of this shared machine.
    let download = || download_all(&client, &hosts);
    let mut downloads = Vec::new();
    let mut inproc_downloads = Vec::new();
    let mut body_bytes = 0;
    for _ in 0..2 {
        body_bytes = download().await.1;
        assert_eq!(downloader.download().await.1, body_bytes);
    }

    // BENCH_EXPORTER runs another build of the exporter against the same simulator and client,
    // for A/B comparisons on this noisy machine.
    let exporter = std::env::var_os("BENCH_EXPORTER")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_xen-exporter").into());
    // BENCH_EXPORTER_B: a second build scraped in the same rounds, each scrape after a download
    // of its own, so that both builds see the same state of the machine; differences too small
    // to see between two runs show in the paired per-round differences.
    let other = std::env::var_os("BENCH_EXPORTER_B");
    let spawn = |exporter: &std::ffi::OsStr, min_interval: &str| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(exporter)
            .env_clear()
            .env("XEN_HOST", sim.master_url())
            .env("XEN_USER", sim.username())
            .env("XEN_PASSWORD_FILE", dir.join("password"))
            .env("XEN_SSL_CA_FILE", dir.join("ca.pem"))
            .env("XEN_MODE", "pool")
            .env("XEN_TIMEOUT", "30")
            .env("XEN_SCRAPE_MIN_INTERVAL", min_interval)
            .env("PORT", port.to_string())
            .env("BIND", "127.0.0.1")
            .env(
                "XEN_LOG_LEVEL",
                std::env::var("BENCH_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
            )
            .spawn()
            .expect("exporter binary");
        (child, format!("http://127.0.0.1:{port}"))
    };
    let (mut child, url) = spawn(&exporter, "0");
    // A second exporter that answers every scrape after its first from that first collection
    // (`XEN_SCRAPE_MIN_INTERVAL`): what serving the same exposition costs without any XAPI
    // request, through the same encoder, HTTP stack and client. It is the floor of the part of
    // a scrape that comes after the last body.
    let (mut cached_child, cached_url) = spawn(&exporter, "3600");
    let mut other = other.map(|b| spawn(&b, "0"));
    let pid = child.id();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let other_url = other.as_ref().map(|(_, url)| url.clone());
    for url in [Some(&url), Some(&cached_url), other_url.as_ref()]
        .into_iter()
        .flatten()
    {
        for _ in 0..600 {
            if let Ok(r) = http.get(format!("{url}/-/ready")).send().await
                && r.status() == 200
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let rss_ready = status_kib(pid, "VmRSS:");
    let scrape = |url: &str, gzip: bool| {
        let http = http.clone();
        let url = url.to_owned();
        async move {
            let started = Instant::now();
            let mut request = http.get(format!("{url}/metrics"));
            if gzip {
                request = request.header("accept-encoding", "gzip");
            }
            let mut response = request.send().await.unwrap();
            let headers = started.elapsed();
            assert_eq!(response.status(), 200);
            // Counted and dropped, as load generators do: the figure is the exporter's, not
            // the time this client would take to gather 10 MiB into one buffer.
            let mut len = 0;
            while let Some(chunk) = response.chunk().await.unwrap() {
                len += chunk.len();
            }
            (len, headers)
        }
    };
    let mut exposition_bytes = 0;
    for _ in 0..2 {
        exposition_bytes = scrape(&url, false).await.0;
        scrape(&cached_url, false).await;
        if let Some(other_url) = &other_url {
            scrape(other_url, false).await;
        }
    }
    let rss_after_warmup = status_kib(pid, "VmRSS:");
    let peak_after_warmup = status_kib(pid, "VmHWM:");
    let mut results = Vec::new();
    for gzip in [true, false] {
        if gzip && !args.gzip {
            continue;
        }
        let cpu_before = cpu_seconds(pid);
        let faults_before = minor_faults(pid);
        let mut cpu_idle = 0.0;
        let mut round_downloads = Vec::new();
        let mut round_inproc = Vec::new();
        let mut walls = Vec::new();
        let mut firsts = Vec::new();
        let mut serves = Vec::new();
        let mut others = Vec::new();
        let mut bytes = 0;
        for _ in 0..args.scrapes {
            let cpu_paused = cpu_seconds(pid);
            let inproc = download().await.0;
            inproc_downloads.push(inproc);
            round_inproc.push(inproc);
            let took = downloader.download().await.0;
            downloads.push(took);
            round_downloads.push(took);
            // The exporter idles during the download; what it used then is not the scrape's.
            cpu_idle += cpu_seconds(pid) - cpu_paused;
            let started = Instant::now();
            let (len, headers) = scrape(&url, gzip).await;
            bytes = len;
            walls.push(started.elapsed());
            firsts.push(headers);
            let cpu_paused = cpu_seconds(pid);
            let started = Instant::now();
            scrape(&cached_url, gzip).await;
            serves.push(started.elapsed());
            if let Some(other_url) = &other_url {
                let download = downloader.download().await.0;
                let started = Instant::now();
                scrape(other_url, gzip).await;
                others.push((download, started.elapsed()));
            }
            cpu_idle += cpu_seconds(pid) - cpu_paused;
        }
        if !others.is_empty() {
            let a: Vec<Duration> = walls
                .iter()
                .zip(&round_downloads)
                .map(|(w, d)| w.saturating_sub(*d))
                .collect();
            let b: Vec<Duration> = others.iter().map(|(d, w)| w.saturating_sub(*d)).collect();
            let mut paired: Vec<f64> = a
                .iter()
                .zip(&b)
                .map(|(a, b)| b.as_secs_f64() - a.as_secs_f64())
                .collect();
            paired.sort_by(f64::total_cmp);
            let b_wall = median(others.iter().map(|o| o.1).collect());
            let b_download = median(others.iter().map(|o| o.0).collect());
            println!(
                "A/B {}: scrape - download A {:?}, B {:?} (medians); B - A per round, median {:.3} ms; B wall {:?} = {:.2} x its downloads",
                if gzip { "gzip " } else { "plain" },
                median(a),
                median(b),
                paired[paired.len() / 2] * 1e3,
                b_wall,
                b_wall.as_secs_f64() / b_download.as_secs_f64(),
            );
        }
        let cpu = (cpu_seconds(pid) - cpu_before - cpu_idle) / args.scrapes as f64;
        let faults = (minor_faults(pid) - faults_before) / args.scrapes as u64;
        results.push((
            gzip,
            median(walls),
            median(firsts),
            cpu,
            bytes,
            median(round_downloads),
            median(round_inproc),
            faults,
            median(serves),
        ));
    }
    let peak = status_kib(pid, "VmHWM:");
    for child in [
        Some(&mut child),
        Some(&mut cached_child),
        other.as_mut().map(|o| &mut o.0),
    ]
    .into_iter()
    .flatten()
    {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(downloader.input);
    let _ = downloader.child.wait().await;
    client.logout().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    let downloads_len = downloads.len();
    let download = median(downloads);
    let inproc_download = median(inproc_downloads);
    println!(
        "pool: {} hosts x {} VMs; rrd_updates bodies {:.1} MiB per scrape; exposition {:.1} MiB",
        args.hosts,
        args.vms,
        body_bytes as f64 / 1048576.0,
        exposition_bytes as f64 / 1048576.0
    );
    println!(
        "download only, by a process of its own (median of {}, one before each scrape): {:?}; from inside the bench's process, beside the simulator: {:?}",
        downloads_len, download, inproc_download
    );
    for (gzip, wall, headers, cpu, bytes, download, inproc, faults, serve) in results {
        println!(
            "scrape {} (median of {}): wall {:?} = {:.2} x download ({:?} in the same rounds; {:.2} x the in-process download, {:?}; response headers after {:?}); exporter CPU {:.3} s/scrape, {} minor page faults/scrape; response {:.1} MiB",
            if gzip { "gzip " } else { "plain" },
            args.scrapes,
            wall,
            wall.as_secs_f64() / download.as_secs_f64(),
            download,
            wall.as_secs_f64() / inproc.as_secs_f64(),
            inproc,
            headers,
            cpu,
            faults,
            bytes as f64 / 1048576.0
        );
        println!(
            "  the same exposition served from a cached collection (no XAPI request): {:?} (median); scrape - download = {:?}",
            serve,
            wall.saturating_sub(download)
        );
    }
    println!(
        "exporter RSS when ready (inventory loaded) {:.1} MiB; after warm-up scrapes {:.1} MiB (peak so far {:.1} MiB); peak RSS (VmHWM) {:.1} MiB",
        rss_ready as f64 / 1024.0,
        rss_after_warmup as f64 / 1024.0,
        peak_after_warmup as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}
