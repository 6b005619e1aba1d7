//! A real Prometheus (Debian's `prometheus`) scraping a deployment's nodes every second, so that
//! the dashboard's queries can be run against what the nodes export.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, http_get, TempDir};

/// How long Prometheus may take to answer `/-/ready`.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A Prometheus process, killed on drop.
pub struct Prometheus {
    child: Child,
    /// Its HTTP address.
    pub address: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job `roster`) every second and evaluating the
    /// rule file `rules` every second; waits until ready.
    pub fn start(targets: &[SocketAddr], rules: &std::path::Path) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\n\
             scrape_configs:\n  - job_name: roster\n    static_configs:\n      - targets: [{}]\n",
            rules.display(),
            list.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus (Debian package prometheus; scripts/test installs it)");
        let prometheus = Prometheus {
            child,
            address,
            _dir: dir,
        };
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let ready = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1))
                .is_ok()
                && http_get(address, "/-/ready").0 == 200;
            if ready {
                return prometheus;
            }
            assert!(Instant::now() < deadline, "prometheus not ready in time");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The result of the instant query `expr` (`data.result`), or the error Prometheus gave.
    pub fn query(&self, expr: &str) -> Result<serde_json::Value, String> {
        let (status, body) = http_get(
            self.address,
            &format!("/api/v1/query?query={}", percent_encode(expr)),
        );
        let answer: serde_json::Value =
            serde_json::from_str(&body).map_err(|error| format!("HTTP {status}: {error}"))?;
        if answer["status"] != "success" {
            return Err(format!("HTTP {status}: {}", answer["error"]));
        }
        Ok(answer["data"]["result"].clone())
    }
}

impl Prometheus {
    /// Every rule's name and health (`ok` once evaluated without error), and its last error.
    pub fn rule_health(&self) -> Vec<(String, String, String)> {
        let (_, body) = http_get(self.address, "/api/v1/rules");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .map(|rule| {
                let text = |key: &str| rule[key].as_str().unwrap_or("").to_string();
                (text("name"), text("health"), text("lastError"))
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` with every byte but unreserved ones percent-encoded (RFC 3986).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
