//! End-to-end scrape benchmark: a simulated pool of 8 hosts × 250 VMs on loopback, the real
//! `xen-exporter` binary in its own process, and three figures: the scrape's wall time, as a
//! client in a process of its own reads it (as Prometheus is one), against the time the same
//! `/rrd_updates` bodies take just to download (by a process of its own that does nothing
//! else, as the exporter is one), the exporter's CPU time per
//! scrape, and its peak RSS; beside them, the time a second exporter takes to serve the same
//! exposition from a cached collection, the floor of what follows the last body. Run with
//! `cargo bench --bench scrape` (optionally `-- --hosts N --vms N --scrapes N`, and `--no-gzip`
//! to leave out the gzip scrapes, e.g. when profiling). For A/B comparisons of two builds,
//! `BENCH_EXPORTER=<path>` replaces the exporter under test and `BENCH_EXPORTER_B=<path>` adds
//! a second one scraped in the same rounds (run it twice with the two swapped: the second slot
//! of a round has a bias of its own). `XEN_COLLECT_*` and `XEN_METRICS_NAMING` in the bench's
//! environment reach the exporters; nothing else of it does.
//!
//! `--slow-readers [N]` (N = 40 when not given, the default cap of `/metrics` requests in
//! flight) measures memory under slow clients instead of the timed rounds: after the warm-up
//! scrapes, N requests on N connections of their own are sent together, so that they share
//! one collection, and each reader takes its body a little at a time (at most 64 KiB, then a
//! pause; a 64 KiB receive buffer, so that the kernel holds little of the response for it),
//! so that all of them are mid-body at once and the transfer takes about `--slow-seconds S`
//! (3). It prints, for gzip (unless `--no-gzip`) and plain text: the slowest reader's wall
//! time, the bytes per reader, whether every body was complete (the end of its chunked
//! encoding, a valid gzip trailer, every host's `xen_host_up`) and all were identical, and the
//! exporter's VmHWM before the readers and during them (reset in between), the highest VmRSS
//! sampled meanwhile and its VmRSS after them, against the 64 MiB budget. With
//! `BENCH_EXPORTER_B`, both exporters are measured, one after the other.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use std::hash::{DefaultHasher, Hasher};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use xapi_sim::{Generation, Sim, SimConfig};
use xen_exporter::config::{Collectors, Endpoint, Mode, Naming, PoolConfig, Secret, TlsConfig};
use xen_exporter::xapi::Client;

struct Args {
    hosts: usize,
    vms: usize,
    scrapes: usize,
    gzip: bool,
    /// `--slow-readers [N]`: only the slow-reader measurement, with N readers.
    slow_readers: Option<usize>,
    /// `--slow-seconds S`: about how long the slow readers take for their bodies.
    slow_seconds: f64,
}

/// The exporter's default cap of `/metrics` requests in flight (`--web.max-requests`).
const DEFAULT_MAX_REQUESTS: usize = 40;

fn args() -> Args {
    let mut args = Args {
        hosts: 8,
        vms: 250,
        scrapes: 20,
        gzip: true,
        slow_readers: None,
        slow_seconds: 3.0,
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
            "--slow-readers" => args.slow_readers = Some(next().unwrap_or(DEFAULT_MAX_REQUESTS)),
            "--slow-seconds" => {
                let seconds = argv.get(i + 1).and_then(|v| v.parse().ok());
                args.slow_seconds = seconds.unwrap_or(args.slow_seconds);
            }
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
        naming: Naming::default(),
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

/// The parent's end of the bench binary run again as a helper (`--download-only` or
/// `--scrape-only`): one line of question, one line of answer.
struct Helper {
    child: tokio::process::Child,
    input: tokio::process::ChildStdin,
    output: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Helper {
    fn spawn<I, A>(args: I) -> Helper
    where
        I: IntoIterator<Item = A>,
        A: AsRef<std::ffi::OsStr>,
    {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env_clear()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the bench binary again, as a helper");
        let input = child.stdin.take().unwrap();
        let output = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Helper {
            child,
            input,
            output,
        }
    }

    /// The helper's answer to `line`, as numbers.
    async fn ask(&mut self, line: &str) -> Vec<u64> {
        self.input.write_all(line.as_bytes()).await.unwrap();
        self.input.write_all(b"\n").await.unwrap();
        self.input.flush().await.unwrap();
        let answer = self
            .output
            .next_line()
            .await
            .unwrap()
            .expect("the helper answers");
        answer.split(' ').map(|f| f.parse().unwrap()).collect()
    }

    /// Ends the helper: it stops at the end of its input.
    async fn finish(self) {
        let Helper {
            mut child, input, ..
        } = self;
        drop(input);
        let _ = child.wait().await;
    }
}

/// A `--download-only` process.
struct Downloader(Helper);

impl Downloader {
    fn spawn(sim: &Sim, dir: &std::path::Path, hosts: usize) -> Downloader {
        let mut args = vec![
            "--download-only".to_owned(),
            dir.display().to_string(),
            sim.master_url(),
            sim.username().to_owned(),
        ];
        args.extend((0..hosts).map(|h| sim.host_url(h)));
        Downloader(Helper::spawn(args))
    }

    /// One download of every host's body: how long it took, and how many bytes.
    async fn download(&mut self) -> (Duration, usize) {
        let answer = self.0.ask("go").await;
        (
            Duration::from_nanos(answer[0]),
            usize::try_from(answer[1]).unwrap(),
        )
    }
}

/// One scrape of `<url>/metrics`, the body read chunk by chunk and dropped, as load
/// generators do (the figure is the exporter's, not the time this client would take to gather
/// 13 MiB into one buffer): its wall time, the time to the response headers, and the bytes.
async fn scrape_once(http: &reqwest::Client, url: &str, gzip: bool) -> (Duration, Duration, usize) {
    let started = Instant::now();
    let mut request = http.get(format!("{url}/metrics"));
    if gzip {
        request = request.header("accept-encoding", "gzip");
    }
    let mut response = request.send().await.unwrap();
    let headers = started.elapsed();
    assert_eq!(response.status(), 200);
    let mut len = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        len += chunk.len();
    }
    (started.elapsed(), headers, len)
}

/// The bench binary run again with `--scrape-only`: the client that scrapes the exporters, in a
/// process of its own as Prometheus is, and as the downloader is, so that reading a response
/// does not take the threads the simulator serves with. For each line `<url> <0|1>` (gzip) on
/// stdin it scrapes once and answers `<nanoseconds> <nanoseconds to the headers> <bytes>`.
async fn scrape_only() {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Ok(Some(line)) = lines.next_line().await {
        let (url, gzip) = line.split_once(' ').unwrap();
        let (took, headers, len) = scrape_once(&http, url, gzip == "1").await;
        let answer = format!("{} {} {len}\n", took.as_nanos(), headers.as_nanos());
        stdout.write_all(answer.as_bytes()).await.unwrap();
        stdout.flush().await.unwrap();
    }
}

/// The `--scrape-only` process.
struct Scraper(Helper);

impl Scraper {
    fn spawn() -> Scraper {
        Scraper(Helper::spawn(["--scrape-only"]))
    }

    /// One scrape of `url`: its wall time as the scraper measured it, the time to the response
    /// headers, and the bytes of the body.
    async fn scrape(&mut self, url: &str, gzip: bool) -> (Duration, Duration, usize) {
        let answer = self.0.ask(&format!("{url} {}", u8::from(gzip))).await;
        (
            Duration::from_nanos(answer[0]),
            Duration::from_nanos(answer[1]),
            usize::try_from(answer[2]).unwrap(),
        )
    }
}

/// Receive buffer of a slow reader's socket: the kernel holds little of a response for it, so
/// that what it has not read yet waits in the exporter.
const SLOW_RCVBUF: u32 = 64 << 10;

/// Most a slow reader takes from its socket before each pause.
const SLOW_READ: usize = 64 << 10;

/// The exporter's peak RSS that `--slow-readers` is to show it stays within.
const BUDGET_MIB: f64 = 64.0;

/// One exporter under `--slow-readers`.
struct SlowRun {
    /// "A " or "B " with `BENCH_EXPORTER_B`, else empty.
    label: &'static str,
    pid: u32,
    addr: SocketAddr,
    readers: usize,
    hosts: usize,
    /// About how long each reader takes for its body.
    seconds: f64,
}

impl SlowRun {
    /// `readers` slow readers of one collection, with gzip or not, whose bodies are expected to
    /// be about `expected` bytes long (the pace is set from it); prints what they got and the
    /// exporter's memory meanwhile.
    async fn measure(&self, gzip: bool, expected: usize) {
        let pid = self.pid;
        let read = (expected / 64).clamp(1 << 10, SLOW_READ);
        let pause = Duration::from_secs_f64(self.seconds / expected.div_ceil(read).max(1) as f64);
        let peak_before = status_kib(pid, "VmHWM:");
        let rss_before = status_kib(pid, "VmRSS:");
        // Writing 5 resets VmHWM to the current RSS (Linux 4.0), so that the peak read after
        // the readers is theirs.
        let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let stop = Arc::new(AtomicBool::new(false));
        let highest = Arc::new(AtomicU64::new(0));
        let sampler = tokio::spawn({
            let (stop, highest) = (stop.clone(), highest.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    highest.fetch_max(status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });

        // Connected first, then the requests sent together, so that they share one collection.
        let mut streams = Vec::new();
        for _ in 0..self.readers {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(SLOW_RCVBUF).unwrap();
            streams.push(
                socket
                    .connect(self.addr)
                    .await
                    .expect("connect to the exporter"),
            );
        }
        let start = Arc::new(tokio::sync::Barrier::new(self.readers));
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\n{}Connection: close\r\n\r\n",
            self.addr,
            if gzip {
                "Accept-Encoding: gzip\r\n"
            } else {
                ""
            }
        );
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|stream| {
                let (start, request) = (start.clone(), request.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    slow_read(stream, request.as_bytes(), read, pause).await
                })
            })
            .collect();
        let mut readings = Vec::new();
        for task in tasks {
            readings.push(task.await.unwrap().expect("a slow reader's connection"));
        }
        stop.store(true, Ordering::Relaxed);
        sampler.await.unwrap();
        let peak = status_kib(pid, "VmHWM:");
        let highest = highest
            .load(Ordering::Relaxed)
            .max(status_kib(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rss_after = status_kib(pid, "VmRSS:");

        let served: Vec<&Reading> = readings.iter().filter(|r| r.status == Some(200)).collect();
        let complete = served
            .iter()
            .filter(|r| r.complete && r.text.host_up == self.hosts && r.text.vm_cpu > 0)
            .count();
        let identical = served
            .iter()
            .all(|r| (r.body, &r.text) == (served[0].body, &served[0].text));
        // Of the readers served: a 503 (beyond the cap) is quick and has no body to read.
        let slowest = served.iter().map(|r| r.done).max().unwrap_or_default();
        let fastest = served.iter().map(|r| r.done).min().unwrap_or_default();
        // All mid-body at once: the last reader's first body bytes came before the first
        // reader was done.
        let overlap = served.iter().filter_map(|r| r.first_body).max() < Some(fastest);
        let (body, text) = served.first().map_or((0, 0), |r| (r.body, r.text.bytes));
        let mib = |kib: u64| kib as f64 / 1024.0;
        // The process's peak: the readers' (after the reset) or the one before them.
        let overall = if reset { peak.max(peak_before) } else { peak };
        println!(
            "{}slow readers {}: {} on connections of their own, each reading at most {} KiB then pausing {:?}; slowest {:?} (fastest {:?}), all mid-body at once: {}",
            self.label,
            if gzip { "gzip " } else { "plain" },
            self.readers,
            read >> 10,
            pause,
            slowest,
            fastest,
            if overlap { "yes" } else { "no" },
        );
        println!(
            "  answered 200: {}/{}; {:.2} MiB per reader ({:.2} MiB of text); identical: {}; complete: {}/{} (end of the chunked body{}, {} xen_host_up, xen_vm_cpu)",
            served.len(),
            self.readers,
            body as f64 / 1048576.0,
            text as f64 / 1048576.0,
            if identical { "yes" } else { "NO" },
            complete,
            served.len(),
            if gzip { ", gzip trailer" } else { "" },
            self.hosts,
        );
        println!(
            "  exporter VmHWM before {:.1} MiB (VmRSS {:.1} MiB); {} {:.1} MiB, highest VmRSS sampled {:.1} MiB; VmRSS after {:.1} MiB; peak {:.1} MiB {} the {BUDGET_MIB} MiB budget",
            mib(peak_before),
            mib(rss_before),
            if reset {
                "peak during the readers (VmHWM reset before them)"
            } else {
                "VmHWM after the readers (no reset: since start)"
            },
            mib(peak),
            mib(highest),
            mib(rss_after),
            mib(overall),
            if mib(overall) <= BUDGET_MIB {
                "within"
            } else {
                "OVER"
            },
        );
    }
}

/// What a slow reader got.
struct Reading {
    /// None if the response's head did not come whole.
    status: Option<u16>,
    /// Bytes of the body as sent (compressed, with gzip), without the chunked framing.
    body: usize,
    /// Whether the body ended where its framing says (the last chunk), gzip's trailer was
    /// valid and the text ended with a newline.
    complete: bool,
    text: TextSummary,
    /// From the request to the first bytes of the body, and to its end.
    first_body: Option<Duration>,
    done: Duration,
}

/// Sends `request` on `stream` and reads the response at most `read` bytes at a time, with a
/// pause after each read while the body comes.
async fn slow_read(
    mut stream: tokio::net::TcpStream,
    request: &[u8],
    read: usize,
    pause: Duration,
) -> std::io::Result<Reading> {
    let started = Instant::now();
    stream.write_all(request).await?;
    let mut response = Response::default();
    let mut buf = vec![0; read];
    let mut first_body = None;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        response.feed(&buf[..n])?;
        if first_body.is_none() && response.body > 0 {
            first_body = Some(started.elapsed());
        }
        if matches!(response.framing, Framing::Done) {
            break;
        }
        if response.status == Some(200) {
            tokio::time::sleep(pause).await;
        }
    }
    let done = started.elapsed();
    let ended = matches!(response.framing, Framing::Done | Framing::Close);
    let (decoded, text) = match response.sink {
        Sink::Plain(text) => (true, text.finish()),
        Sink::Gzip(gz) => match gz.finish() {
            Ok(text) => (true, text.finish()),
            Err(_) => (false, TextSummary::default()),
        },
    };
    Ok(Reading {
        status: response.status,
        body: response.body,
        complete: ended && decoded && text.ends_with_newline,
        text,
        first_body,
        done,
    })
}

/// An HTTP/1.1 response read as it comes: the head, then the body by its framing.
#[derive(Default)]
struct Response {
    head: Vec<u8>,
    status: Option<u16>,
    framing: Framing,
    /// Bytes of the body so far, without the chunked framing.
    body: usize,
    sink: Sink,
}

#[derive(Default)]
enum Framing {
    #[default]
    Head,
    Chunked(Chunk),
    /// Content-Length: bytes left.
    Length(usize),
    /// Neither: the body ends with the connection.
    Close,
    Done,
}

/// Where a chunked body is.
enum Chunk {
    /// The chunk-size line so far.
    Size(Vec<u8>),
    /// Bytes of chunk data left.
    Data(usize),
    /// Bytes of the CRLF after the chunk data left.
    DataEnd(usize),
    /// A trailer line so far, after the last chunk.
    Trailer(Vec<u8>),
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Moves the start of `input` onto `line`, up to and with its first newline: whether the line
/// ended.
fn take_line(line: &mut Vec<u8>, input: &mut &[u8]) -> bool {
    match input.iter().position(|&b| b == b'\n') {
        Some(end) => {
            line.extend_from_slice(&input[..=end]);
            *input = &input[end + 1..];
            true
        }
        None => {
            line.extend_from_slice(input);
            *input = &[];
            false
        }
    }
}

impl Response {
    fn feed(&mut self, mut input: &[u8]) -> std::io::Result<()> {
        while !input.is_empty() {
            match &mut self.framing {
                Framing::Head => {
                    let searched = self.head.len().saturating_sub(3);
                    self.head.extend_from_slice(input);
                    let Some(end) = self.head[searched..]
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|at| searched + at + 4)
                    else {
                        return Ok(());
                    };
                    // What came after the head: the start of the body.
                    let rest = self.head.split_off(end);
                    self.parse_head()?;
                    return self.feed(&rest);
                }
                Framing::Chunked(Chunk::Size(line)) => {
                    if take_line(line, &mut input) {
                        let line = std::str::from_utf8(line).map_err(|_| invalid("chunk size"))?;
                        let hex = line.split(';').next().unwrap_or("").trim();
                        let size =
                            usize::from_str_radix(hex, 16).map_err(|_| invalid("chunk size"))?;
                        self.framing = Framing::Chunked(if size == 0 {
                            Chunk::Trailer(Vec::new())
                        } else {
                            Chunk::Data(size)
                        });
                    }
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    let (data, rest) = input.split_at(input.len().min(*left));
                    *left -= data.len();
                    if *left == 0 {
                        self.framing = Framing::Chunked(Chunk::DataEnd(2));
                    }
                    self.sink.write(data)?;
                    self.body += data.len();
                    input = rest;
                }
                Framing::Chunked(Chunk::DataEnd(left)) => {
                    if input[0] != b"\r\n"[2 - *left] {
                        return Err(invalid("no CRLF after chunk data"));
                    }
                    *left -= 1;
                    if *left == 0 {
                        self.framing = Framing::Chunked(Chunk::Size(Vec::new()));
                    }
                    input = &input[1..];
                }
                Framing::Chunked(Chunk::Trailer(line)) => {
                    if take_line(line, &mut input) {
                        if line == b"\r\n" {
                            self.framing = Framing::Done;
                        } else {
                            line.clear();
                        }
                    }
                }
                Framing::Length(left) => {
                    let (data, rest) = input.split_at(input.len().min(*left));
                    *left -= data.len();
                    if *left == 0 {
                        self.framing = Framing::Done;
                    }
                    self.sink.write(data)?;
                    self.body += data.len();
                    input = rest;
                }
                Framing::Close => {
                    self.sink.write(input)?;
                    self.body += input.len();
                    input = &[];
                }
                Framing::Done => return Err(invalid("bytes after the end of the body")),
            }
        }
        Ok(())
    }

    /// Status, framing and content encoding from the head.
    fn parse_head(&mut self) -> std::io::Result<()> {
        let head = std::str::from_utf8(&self.head).map_err(|_| invalid("response head"))?;
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or("").split(' ').nth(1).unwrap_or("");
        self.status = Some(status.parse().map_err(|_| invalid("status line"))?);
        self.framing = Framing::Close;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
            {
                self.framing = Framing::Chunked(Chunk::Size(Vec::new()));
            } else if name.eq_ignore_ascii_case("content-length")
                && !matches!(self.framing, Framing::Chunked(_))
            {
                let length = value.parse().map_err(|_| invalid("content-length"))?;
                self.framing = if length == 0 {
                    Framing::Done
                } else {
                    Framing::Length(length)
                };
            } else if name.eq_ignore_ascii_case("content-encoding") && value == "gzip" {
                self.sink = Sink::Gzip(Box::new(flate2::write::GzDecoder::new(Text::default())));
            }
        }
        Ok(())
    }
}

/// Where a body goes: straight to the text, or through gzip.
enum Sink {
    Plain(Text),
    Gzip(Box<flate2::write::GzDecoder<Text>>),
}

impl Default for Sink {
    fn default() -> Sink {
        Sink::Plain(Text::default())
    }
}

impl Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(text) => text.write_all(data),
            Sink::Gzip(gz) => gz.write_all(data),
        }
    }
}

/// The exposition line by line, not kept: its length, a hash of it and the lines that show it
/// is all there.
#[derive(Default)]
struct Text {
    /// The line so far, when a write ends inside one.
    partial: Vec<u8>,
    hasher: DefaultHasher,
    bytes: usize,
    host_up: usize,
    vm_cpu: usize,
}

/// What a [`Text`] saw; equal for equal texts.
#[derive(Default, PartialEq, Eq)]
struct TextSummary {
    bytes: usize,
    hash: u64,
    host_up: usize,
    vm_cpu: usize,
    ends_with_newline: bool,
}

impl Text {
    fn line(&mut self, line: &[u8]) {
        // Whole lines, so that the hash does not depend on where the reads ended.
        self.hasher.write(line);
        self.bytes += line.len();
        if line.starts_with(b"xen_host_up{") {
            self.host_up += 1;
        } else if line.starts_with(b"xen_vm_cpu{") || line.starts_with(b"xen_vm_cpu_busy_ratio{") {
            self.vm_cpu += 1;
        }
    }

    fn finish(mut self) -> TextSummary {
        let partial = std::mem::take(&mut self.partial);
        if !partial.is_empty() {
            self.line(&partial);
        }
        TextSummary {
            bytes: self.bytes,
            hash: self.hasher.finish(),
            host_up: self.host_up,
            vm_cpu: self.vm_cpu,
            ends_with_newline: partial.is_empty() && self.bytes > 0,
        }
    }
}

impl Write for Text {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(end + 1);
            if self.partial.is_empty() {
                self.line(line);
            } else {
                let mut partial = std::mem::take(&mut self.partial);
                partial.extend_from_slice(line);
                self.line(&partial);
                partial.clear();
                self.partial = partial;
            }
            rest = after;
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let role = argv.get(1).map(String::as_str);
    let helper = matches!(role, Some("--download-only" | "--scrape-only"));
    // `cargo test --benches` runs bench binaries with --bench absent; keep that quick.
    if !helper && !argv.iter().any(|a| a == "--bench") {
        println!("scrape bench: run with `cargo bench --bench scrape`");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match role {
        Some("--download-only") => runtime.block_on(download_only(&argv[2..])),
        Some("--scrape-only") => runtime.block_on(scrape_only()),
        _ => runtime.block_on(run(args())),
    }
}

async fn run(args: Args) {
    // The build that has just written this bench and the exporter leaves megabytes of dirty
    // pages; written back during the timed rounds, they would be measured as the exporter's.
    let _ = std::process::Command::new("sync").status();
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
    // measured too: client and simulator hand over work within one runtime, which makes it
    // quicker than what the exporter can see.
    let mut downloader = Downloader::spawn(&sim, &dir, args.hosts);
    let config = xen_exporter::demo::simulator_pool(&sim, Mode::Pool, Duration::from_secs(30));
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
        // The same bodies, give or take the length of values that changed in between.
        let other = downloader.download().await.1;
        assert!(
            other.abs_diff(body_bytes) <= body_bytes / 100,
            "{other} != {body_bytes}"
        );
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
            // The collector switches and the naming pass through, to measure what a group of
            // families or the conversion of values costs.
            .envs(
                std::env::vars()
                    .filter(|(k, _)| k.starts_with("XEN_COLLECT_") || k == "XEN_METRICS_NAMING"),
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
    let peak_ready = status_kib(pid, "VmHWM:");
    let mut scraper = Scraper::spawn();
    let mut exposition_bytes = 0;
    for _ in 0..2 {
        exposition_bytes = scraper.scrape(&url, false).await.2;
        scraper.scrape(&cached_url, false).await;
        if let Some(other_url) = &other_url {
            scraper.scrape(other_url, false).await;
        }
    }
    let rss_after_warmup = status_kib(pid, "VmRSS:");
    let peak_after_warmup = status_kib(pid, "VmHWM:");
    // `--slow-readers`: that measurement alone, instead of the timed rounds.
    let slow = args.slow_readers.is_some();
    if let Some(readers) = args.slow_readers {
        println!(
            "pool: {} hosts x {} VMs; exposition {:.1} MiB; {readers} slow readers",
            args.hosts,
            args.vms,
            exposition_bytes as f64 / 1048576.0
        );
        let mut exporters = vec![("", pid, url.clone())];
        if let Some((b, b_url)) = &other {
            exporters = vec![("A ", pid, url.clone()), ("B ", b.id(), b_url.clone())];
        }
        for (label, pid, url) in exporters {
            let run = SlowRun {
                label,
                pid,
                addr: url.strip_prefix("http://").unwrap().parse().unwrap(),
                readers,
                hosts: args.hosts,
                seconds: args.slow_seconds,
            };
            for gzip in [true, false] {
                if gzip && !args.gzip {
                    continue;
                }
                // Also the warm-up of gzip, which the warm-up scrapes leave out.
                let expected = scraper.scrape(&url, gzip).await.2;
                run.measure(gzip, expected).await;
            }
        }
    }
    let mut results = Vec::new();
    for gzip in [true, false] {
        if slow || (gzip && !args.gzip) {
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
        // CPU of each exporter over its own scrapes of these rounds (clock ticks are too
        // coarse for a per-round figure).
        let (mut a_cpu, mut b_cpu) = (0.0, 0.0);
        let b_pid = other.as_ref().map(|(b, _)| b.id());
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
            let a_before = cpu_seconds(pid);
            let (wall, headers, len) = scraper.scrape(&url, gzip).await;
            a_cpu += cpu_seconds(pid) - a_before;
            bytes = len;
            walls.push(wall);
            firsts.push(headers);
            let cpu_paused = cpu_seconds(pid);
            serves.push(scraper.scrape(&cached_url, gzip).await.0);
            if let (Some(other_url), Some(b_pid)) = (&other_url, b_pid) {
                let download = downloader.download().await.0;
                let b_before = cpu_seconds(b_pid);
                let wall = scraper.scrape(other_url, gzip).await.0;
                b_cpu += cpu_seconds(b_pid) - b_before;
                others.push((download, wall));
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
            let rounds = args.scrapes as f64;
            println!(
                "A/B {}: scrape - download A {:?}, B {:?} (medians); B - A per round, median {:.3} ms; B wall {:?} = {:.2} x its downloads; CPU per scrape A {:.4} s, B {:.4} s",
                if gzip { "gzip " } else { "plain" },
                median(a),
                median(b),
                paired[paired.len() / 2] * 1e3,
                b_wall,
                b_wall.as_secs_f64() / b_download.as_secs_f64(),
                a_cpu / rounds,
                b_cpu / rounds,
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
    downloader.0.finish().await;
    scraper.0.finish().await;
    client.logout().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    if slow {
        return;
    }

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
        "exporter RSS when ready (inventory loaded) {:.1} MiB (peak so far {:.1} MiB); after warm-up scrapes {:.1} MiB (peak so far {:.1} MiB); peak RSS (VmHWM) {:.1} MiB",
        rss_ready as f64 / 1024.0,
        peak_ready as f64 / 1024.0,
        rss_after_warmup as f64 / 1024.0,
        peak_after_warmup as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}
