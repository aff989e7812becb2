//! Real processes for end-to-end tests: the server, the agent and private Mosquitto brokers,
//! each killed when its handle drops.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `drivetag-server`.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Its HTTP API.
    pub http: SocketAddr,
    /// The broker it uses (agents connect here).
    pub mqtt: (String, u16),
    /// Its log file.
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `binary serve` with `args` and waits until it says where it listens. Its log
    /// goes to `dir/server-N.log`.
    pub fn start(binary: &str, dir: &Path, args: &[&str]) -> ServerProcess {
        let log = unused_path(dir, "server", "log");
        let mut child = Command::new(binary)
            .arg("serve")
            .args(["--http", "127.0.0.1:0"])
            .args(args)
            .env("DRIVETAG_LOG", "info,rumqttd=warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the server's first line");
        let Some(rest) = line
            .trim()
            .strip_prefix("drivetag-server listening: http://")
        else {
            let _ = child.kill();
            panic!(
                "the server did not start: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let (http, mqtt) = rest.split_once(" mqtt://").expect("both addresses");
        let (host, port) = mqtt.rsplit_once(':').expect("host:port");
        ServerProcess {
            child,
            http: http.parse().expect("an HTTP address"),
            mqtt: (host.to_owned(), port.parse().expect("a port")),
            log,
        }
    }

    /// The broker URL agents should use.
    pub fn mqtt_url(&self) -> String {
        format!("mqtt://{}:{}", self.mqtt.0, self.mqtt.1)
    }

    /// Kills it at once, as a power cut would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A metric's value from `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let body = http_get(self.http, "/metrics");
        body.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET, so tests need no HTTP client crate.
pub fn http_get(address: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("the HTTP API");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// `drivetag-agent run` as a child process.
#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl AgentProcess {
    /// Starts `binary run` with `args`; its log goes to `dir/agent-N.log`.
    pub fn start(binary: &str, dir: &Path, args: &[&str]) -> AgentProcess {
        let log = unused_path(dir, "agent", "log");
        let child = Command::new(binary)
            .arg("run")
            .args(args)
            .env("DRIVETAG_LOG", "info,drivetag_agent=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        AgentProcess { child, log }
    }

    /// Kills it at once (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for it to exit on its own, failing the test after `limit`.
    pub fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the agent did not finish within {limit:?}; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Mosquitto broker of the test's own, on a free port, that it can stop and start.
#[derive(Debug)]
pub struct PrivateMosquitto {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    config: Option<PathBuf>,
}

impl PrivateMosquitto {
    /// Starts `mosquitto -p PORT` on a free port.
    pub fn start() -> PrivateMosquitto {
        let port = crate::free_port();
        let mut broker = PrivateMosquitto {
            child: None,
            port,
            config: None,
        };
        broker.restart();
        broker
    }

    /// Starts `mosquitto -c CONFIG`; the configuration must listen on 127.0.0.1:`port`.
    pub fn with_config(config: &Path, port: u16) -> PrivateMosquitto {
        let mut broker = PrivateMosquitto {
            child: None,
            port,
            config: Some(config.to_owned()),
        };
        broker.restart();
        broker
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops it at once; clients lose their connection and whatever it held.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let mut command = Command::new("mosquitto");
        match &self.config {
            Some(config) => command.arg("-c").arg(config),
            None => command.args(["-p", &self.port.to_string()]),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (Debian package mosquitto)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateMosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unused_path(dir: &Path, stem: &str, extension: &str) -> PathBuf {
    (1..)
        .map(|n| dir.join(format!("{stem}-{n}.{extension}")))
        .find(|path| !path.exists())
        .expect("a free name")
}

/// Polls `check` every 50 ms until it holds, failing with `what` after `limit`.
pub fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
