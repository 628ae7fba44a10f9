//! `TestServer`: the real binary on a free port and a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_log::Log;
use eddy_log::wal::{Wal, WalConfig};
use eddy_model::{Entry, Event, LogEntry, codec};
use reqwest::StatusCode;
use serde_json::Value;

pub struct TestServer {
    pub dir: Arc<tempfile::TempDir>,
    pub url: String,
    /// `http://ADDR` of the gRPC listener (empty when turned off).
    pub grpc_url: String,
    pub admin_key: String,
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub client: reqwest::Client,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl TestServer {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[], &[]).await
    }

    /// A server whose rollup windows close 1 s after their end and whose stream checkpoints
    /// every 50 ms, so tests see closed windows and checkpoints at once.
    pub async fn spawn_quick_windows() -> Self {
        let args = [
            "--allowed-lateness",
            "1s",
            "--stream-checkpoint-interval",
            "50ms",
        ];
        Self::spawn_with(&args, &[]).await
    }

    pub async fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut s = Self {
            dir,
            url: String::new(),
            grpc_url: String::new(),
            admin_key: String::new(),
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        };
        s.start();
        s.admin_key = match env.iter().find(|(k, _)| *k == "EDDY_ADMIN_KEY") {
            Some((_, k)) => k.to_string(),
            None => std::fs::read_to_string(s.data_dir().join("admin.key"))
                .unwrap()
                .trim()
                .to_string(),
        };
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn command(data_dir: &Path, args: &[String], env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
        for (k, _) in std::env::vars() {
            if k.starts_with("EDDY_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("--http-addr")
            .arg("127.0.0.1:0");
        if !args.iter().any(|a| a == "--grpc-addr") {
            cmd.arg("--grpc-addr").arg("127.0.0.1:0");
        }
        cmd.args(args);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts the binary and waits until it listens.
    pub fn start(&mut self) {
        let data = self.data_dir();
        let addr_file = data.join("eddy.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stdout.log"))
            .unwrap();
        let mut child = Self::command(&data, &self.args, &self.env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .expect("spawn eddy");
        let t = Instant::now();
        loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                self.url = format!("http://{a}");
                // Written before `eddy.addr` when gRPC is on.
                self.grpc_url = std::fs::read_to_string(data.join("eddy.grpc-addr"))
                    .map(|g| format!("http://{g}"))
                    .unwrap_or_default();
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("eddy exited early with {status}: {}", self.server_log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "eddy did not start: {}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| i32::try_from(c.id()).unwrap())
    }

    /// SIGKILL from any thread, by pid (reap with [`TestServer::kill9`]).
    pub fn sigkill(pid: i32) {
        unsafe_kill(pid, libc::SIGKILL);
    }

    /// SIGTERM from any thread, by pid, without waiting.
    pub fn sigterm(pid: i32) {
        assert_eq!(unsafe_kill(pid, libc::SIGTERM), 0);
    }

    /// Waits until `/metrics` holds `needle` (metrics of a call are taken when it ends,
    /// which the client can see a moment before).
    pub async fn wait_metric(&self, needle: &str) {
        for _ in 0..500 {
            if self.metrics_text().await.contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "/metrics never showed {needle}:\n{}",
            self.metrics_text().await
        );
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let pid = i32::try_from(c.id()).unwrap();
        // SAFETY-free: libc::kill is a plain syscall wrapper.
        assert_eq!(unsafe_kill(pid, libc::SIGTERM), 0);
        let t = Instant::now();
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "eddy did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.start();
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POST with exactly the given headers (besides the API key) and a raw body.
    pub async fn post_raw(
        &self,
        path: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("{}{path}", self.url))
            .header("x-api-key", key);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, key: &str, body: &str) -> (StatusCode, Value) {
        self.request("POST", path, Some(key), Some(body)).await
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.request("GET", path, Some(key), None).await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Ingests 40,000 padded events (40 batches): far more than a live feed's capacity plus
    /// what socket buffers hold, for slow-consumer tests.
    pub async fn flood(&self, key: &str) {
        for chunk in 0..40 {
            let batch: Vec<Value> = (0..1000)
                .map(|i| serde_json::json!({"device_id": format!("d{i}"), "properties": {"pad": "x".repeat(200)}, "metrics": {"n": chunk * 1000 + i}}))
                .collect();
            let (st, _) = self
                .post("/api/v1/events", key, &serde_json::json!(batch).to_string())
                .await;
            assert_eq!(st, StatusCode::OK);
        }
    }

    /// Creates a tenant and a key with `scopes`; returns (tenant id, key secret, key id).
    pub async fn tenant_with_key(&self, name: &str, scopes: &[&str]) -> (String, String, String) {
        let (s, t) = self
            .post(
                "/api/v1/tenants",
                &self.admin_key,
                &format!(r#"{{"name":"{name}"}}"#),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        let id = t["id"].as_str().unwrap().to_string();
        let (key, key_id) = self.key_for(&id, scopes).await;
        (id, key, key_id)
    }

    pub async fn key_for(&self, tenant: &str, scopes: &[&str]) -> (String, String) {
        let body = serde_json::json!({"name": "test", "scopes": scopes}).to_string();
        let (s, k) = self
            .post(
                &format!("/api/v1/tenants/{tenant}/keys"),
                &self.admin_key,
                &body,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{k}");
        (
            k["key"].as_str().unwrap().to_string(),
            k["id"].as_str().unwrap().to_string(),
        )
    }

    /// Waits until everything in the log is visible to queries.
    pub async fn wait_visible(&self) {
        self.wait_caught_up("store").await
    }

    /// Waits until the stream processor has applied the whole log.
    pub async fn wait_rollups(&self) {
        self.wait_caught_up("stream").await
    }

    /// Waits until `/lag` shows no lag for `part` (`store` or `stream`).
    async fn wait_caught_up(&self, part: &str) {
        for _ in 0..1000 {
            let (_, v) = self.get("/lag", &self.admin_key).await;
            if v[part]["lag"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{part} did not catch up with the log");
    }

    /// Every event a listing returns, following `next_cursor`.
    pub async fn list_all(&self, key: &str, path_and_query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let sep = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                Some(c) => format!("{path_and_query}{sep}cursor={c}"),
                None => path_and_query.to_string(),
            };
            let (st, v) = self.get(&url, key).await;
            assert_eq!(st, StatusCode::OK, "{url}: {v}");
            out.extend(v["data"].as_array().unwrap().iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    pub async fn log_end(&self) -> u64 {
        let (s, v) = self.get("/stats", &self.admin_key).await;
        assert_eq!(s, StatusCode::OK);
        v["log"]["end_offset"].as_u64().unwrap()
    }

    /// Stops the server (SIGTERM) and reads every entry of its log.
    pub fn stop_and_read_log(&mut self) -> Vec<LogEntry> {
        if self.child.is_some() {
            assert!(self.terminate().success(), "{}", self.server_log());
        }
        read_log(&self.data_dir())
    }
}

fn unsafe_kill(pid: i32, sig: i32) -> i32 {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig)
    }
}

pub fn read_log(data_dir: &Path) -> Vec<LogEntry> {
    let wal = Wal::open(WalConfig::new(data_dir.join("wal"))).unwrap();
    let mut out = Vec::new();
    let mut from = wal.start_offset();
    loop {
        let recs = wal.read(from, 10_000).unwrap();
        let Some(last) = recs.last() else { break };
        from = last.offset + 1;
        out.extend(
            recs.iter()
                .map(|r| codec::decode_entry(&r.payload).unwrap()),
        );
    }
    out
}

/// Every event the entries hold, in log order, whichever record format carries them.
pub fn events(entries: &[LogEntry]) -> Vec<Event> {
    entries
        .iter()
        .flat_map(|e| match &e.entry {
            Some(Entry::Event(ev)) => vec![ev.clone()],
            Some(Entry::Events(b)) => codec::decode_batch(b).unwrap().events(),
            _ => Vec::new(),
        })
        .collect()
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}
