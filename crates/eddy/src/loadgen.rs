//! `eddy loadgen`: realistic readings and product events against a running server, with live
//! progress and a final summary (requests, events, success rate, events/s, latency
//! percentiles, bytes, errors by status).
//!
//! Workers run closed-loop (each waits for its response before the next request); `--rate`
//! paces the total so the run is open to a fixed offered load as long as the server keeps up.
//! Latency is measured from the moment a request is sent to its full response.
//!
//! `--protocol grpc` sends the same events as unary gRPC calls (`IngestEvents`, or
//! `IngestEvent` with `--batch 1`) and `--protocol grpc-stream` as batches over one
//! `StreamEvents` call per worker (acks read as they come, `--stream-window` batches in
//! flight; latency is send → ack of each batch), both through `eddy-client` with retries off
//! (a refusal is a result).
//!
//! `--ws-latency` also subscribes to the tenant's WebSocket feed (`/api/v1/ws`, events channel;
//! the key then needs the read scope too) and measures, per event, the time from building its
//! request (just before sending) to receiving it on the socket: ingest → durable → stream
//! processor → WebSocket delivery, as a dashboard would see it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Settings of `eddy loadgen`.
#[derive(Debug, Args)]
pub(crate) struct LoadgenArgs {
    /// Server URL.
    #[arg(long, env = "EDDY_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key with the write scope (default: the admin key in `<data-dir>/admin.key`, as a
    /// server started from the same directory wrote it).
    #[arg(long, env = "EDDY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Where to find `admin.key` when no `--api-key` is given.
    #[arg(long, env = "EDDY_DATA_DIR", default_value = "./data")]
    data_dir: std::path::PathBuf,
    /// Target events per second in total (0 = as fast as possible). Requests are paced so that
    /// `rate × duration` events are sent (a `--batch` above the rate is lowered to it).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to run, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Number of simulated devices (and users).
    #[arg(long, default_value_t = 100)]
    devices: u64,
    /// Events per request (1 sends a single JSON object).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Inject spikes into readings (about 1 in 200).
    #[arg(long)]
    anomalies: bool,
    /// Event kinds to generate: readings, clicks, page_views.
    #[arg(long, value_delimiter = ',', default_value = "readings")]
    mix: Vec<String>,
    /// Route to post to.
    #[arg(long, default_value = "/api/v1/events")]
    path: String,
    /// Ask for `?sync=false` (202 once queued) instead of durable acks.
    #[arg(long)]
    no_sync: bool,
    /// Print the final summary as JSON.
    #[arg(long)]
    json: bool,
    /// Measure ingest → WebSocket delivery latency per event (needs a read+write key).
    #[arg(long)]
    ws_latency: bool,
    /// `http` (JSON to `--path`), `grpc` (unary calls) or `grpc-stream` (`StreamEvents`).
    #[arg(long, value_enum, default_value = "http")]
    protocol: Protocol,
    /// gRPC server URL (for `--protocol grpc` / `grpc-stream`).
    #[arg(long, env = "EDDY_GRPC_URL", default_value = "http://127.0.0.1:50051")]
    grpc_url: String,
    /// After the run, wait until the store and the rollups have applied everything acknowledged
    /// (`GET /lag`, so the key needs the read scope too) and report end-to-end events/s: acked
    /// events over the time from the start until they are visible in queries and rollups.
    #[arg(long)]
    verify: bool,
    /// Batches in flight per `StreamEvents` call (`grpc-stream`).
    #[arg(long, default_value_t = 4)]
    stream_window: usize,
}

/// How events travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Protocol {
    Http,
    Grpc,
    GrpcStream,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Reading,
    Click,
    PageView,
}

struct Gen {
    kinds: Vec<Kind>,
    devices: u64,
    anomalies: bool,
    seq: AtomicU64,
    run_id: String,
    /// Stamp events with the run and their send time (µs since the epoch) for `--ws-latency`.
    stamp: bool,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Gen {
    fn event(&self, rng: &mut impl Rng) -> Value {
        let mut e = self.unstamped(rng);
        if self.stamp
            && let Some(o) = e.as_object_mut()
        {
            let props = o.entry("properties").or_insert_with(|| json!({}));
            props["lg_run"] = json!(self.run_id);
            props["lg_sent_us"] = json!(now_us());
        }
        e
    }

    fn unstamped(&self, rng: &mut impl Rng) -> Value {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let kind = self.kinds[rng.random_range(0..self.kinds.len())];
        let dev = rng.random_range(0..self.devices.max(1));
        let now_ms = chrono::Utc::now().timestamp_millis();
        match kind {
            Kind::Reading => {
                let mut temp = 20.0 + (dev % 10) as f64 + rng.random_range(-0.5..0.5);
                if self.anomalies && rng.random_range(0..200) == 0 {
                    temp += 25.0;
                }
                json!({
                    "device_id": format!("sensor-{dev:05}"),
                    "ts": now_ms,
                    "metrics": {
                        "temperature": (temp * 100.0).round() / 100.0,
                        "humidity": (rng.random_range(30.0..60.0f64) * 10.0).round() / 10.0,
                        "pressure": (rng.random_range(1000.0..1025.0f64) * 100.0).round() / 100.0,
                    }
                })
            }
            Kind::Click => json!({
                "event_id": format!("{}-{n}", self.run_id),
                "user_id": format!("user-{dev}"),
                "event_type": "click",
                "page_url": format!("https://example.com/p/{}", rng.random_range(0..50)),
                "time_stamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            }),
            Kind::PageView => json!({
                "id": format!("{}-{n}", self.run_id),
                "user_id": format!("user-{dev}"),
                "event_type": "page_view",
                "properties": {"page": format!("/page/{}", rng.random_range(0..20)), "duration": rng.random_range(1..120).to_string()},
                "timestamp": now_ms,
                "source": if rng.random_bool(0.7) { "web-app" } else { "mobile-app" },
            }),
        }
    }
}

impl Gen {
    /// The same event as [`Gen::event`], as the client library's type (gRPC).
    fn typed(&self, rng: &mut impl Rng) -> eddy_client::Event {
        let v = self.event(rng);
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let mut e =
            eddy_client::Event::new(text("event_type").unwrap_or_else(|| "reading".to_string()));
        e.event_id = text("event_id").or_else(|| text("id"));
        e.device_id = text("device_id");
        e.user_id = text("user_id");
        e.page_url = text("page_url");
        e.source = text("source");
        e.time = Some(std::time::SystemTime::now());
        if let Some(m) = v.get("metrics").and_then(Value::as_object) {
            e.metrics = m
                .iter()
                .filter_map(|(k, x)| Some((k.clone(), x.as_f64()?)))
                .collect();
        }
        if let Some(p) = v.get("properties").and_then(Value::as_object) {
            e.properties = p.iter().map(|(k, x)| (k.clone(), x.clone())).collect();
        }
        e
    }
}

/// Where a worker's requests go.
#[derive(Clone)]
enum Sender {
    Http {
        client: reqwest::Client,
        url: String,
        key: String,
    },
    Grpc(eddy_client::Client),
}

impl Sender {
    /// Sends one request of `batch` events; its size in bytes (HTTP) and its outcome.
    async fn send(&self, generator: &Gen, batch: usize) -> (u64, Result<(), String>) {
        match self {
            Sender::Http { client, url, key } => {
                let body = {
                    let mut rng = rand::rng();
                    if batch == 1 {
                        serde_json::to_vec(&generator.event(&mut rng))
                    } else {
                        serde_json::to_vec(
                            &(0..batch)
                                .map(|_| generator.event(&mut rng))
                                .collect::<Vec<_>>(),
                        )
                    }
                };
                let Ok(body) = body else {
                    return (0, Err("encode".into()));
                };
                let len = body.len() as u64;
                let res = client
                    .post(url)
                    .header("x-api-key", key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let outcome = match res {
                    Ok(r) => {
                        let status = r.status();
                        let _ = r.bytes().await;
                        if status.is_success() {
                            Ok(())
                        } else {
                            Err(status.as_u16().to_string())
                        }
                    }
                    Err(e) => Err(if e.is_connect() {
                        "connect".to_string()
                    } else {
                        "transport".to_string()
                    }),
                };
                (len, outcome)
            }
            Sender::Grpc(client) => {
                let events: Vec<eddy_client::Event> = {
                    let mut rng = rand::rng();
                    (0..batch).map(|_| generator.typed(&mut rng)).collect()
                };
                let r = if batch == 1 {
                    let Some(one) = events.into_iter().next() else {
                        return (0, Err("empty".into()));
                    };
                    client.send_one(one).await
                } else {
                    client.send(events).await
                };
                (0, r.map(drop).map_err(|e| error_kind(&e)))
            }
        }
    }
}

/// A short label of a client error, for the error counts.
fn error_kind(e: &eddy_client::Error) -> String {
    use eddy_client::Error as E;
    match e {
        E::Rejected { .. } => "rejected".into(),
        E::Unauthenticated(_) => "unauthenticated".into(),
        E::PermissionDenied(_) => "permission_denied".into(),
        E::Exhausted { last, .. } => last.split(':').next().unwrap_or("retry").to_string(),
        E::Server { code, .. } => code.clone(),
        E::Transport(_) => "transport".into(),
        E::Config(_) => "config".into(),
    }
}

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    ok_requests: AtomicU64,
    events: AtomicU64,
    ok_events: AtomicU64,
    bytes: AtomicU64,
}

pub(crate) fn run(mut args: LoadgenArgs) -> Result<()> {
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    if args.api_key.is_none() {
        let path = args.data_dir.join("admin.key");
        let key = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no --api-key (or EDDY_API_KEY) and no admin key at {} to fall back to",
                path.display()
            )
        })?;
        args.api_key = Some(key.trim().to_string());
    }
    // One request per slot of `batch / rate` seconds: a batch larger than a second's worth of
    // events would send more than the rate (`--rate 50` with 100 per request sent 100/s).
    if args.rate > 0 && args.batch as u64 > args.rate {
        eprintln!(
            "--batch {} is above --rate {}: sending {} events per request",
            args.batch, args.rate, args.rate
        );
        args.batch = usize::try_from(args.rate).unwrap_or(usize::MAX);
    }
    let kinds = args
        .mix
        .iter()
        .map(|m| match m.trim() {
            "readings" | "reading" => Ok(Kind::Reading),
            "clicks" | "click" => Ok(Kind::Click),
            "page_views" | "page_view" => Ok(Kind::PageView),
            other => bail!("unknown --mix kind `{other}`; use readings, clicks, page_views"),
        })
        .collect::<Result<Vec<_>>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args, kinds))
}

impl LoadgenArgs {
    /// The key (set by `run` from the flag or the data dir).
    fn key(&self) -> &str {
        self.api_key.as_deref().unwrap_or_default()
    }
}

/// An answer that says the key will never do: every further request would fail the same way.
fn refusal(code: &str) -> bool {
    matches!(
        code,
        "401" | "403" | "unauthenticated" | "permission_denied"
    )
}

async fn run_async(args: LoadgenArgs, kinds: Vec<Kind>) -> Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .build()?;
    let sep = if args.path.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{}{}",
        args.url.trim_end_matches('/'),
        args.path,
        if args.no_sync {
            format!("{sep}sync=false")
        } else {
            String::new()
        }
    );
    let generator = Arc::new(Gen {
        kinds,
        devices: args.devices,
        anomalies: args.anomalies,
        seq: AtomicU64::new(0),
        run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        stamp: args.ws_latency,
    });
    let delivery = if args.ws_latency {
        Some(ws_listener(&args, generator.run_id.clone()).await?)
    } else {
        None
    };
    let totals = Arc::new(Totals::default());
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?,
    ));
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let start = Instant::now();
    let deadline = start + args.duration;
    // Pacing: request k of the whole run is due at start + k * interval.
    let interval =
        (args.rate > 0).then(|| Duration::from_secs_f64(args.batch as f64 / args.rate as f64));
    let next_slot = Arc::new(AtomicU64::new(0));
    // The first refusal of the key (401/403) stops every worker.
    let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut senders = Vec::new();
    for _ in 0..args.concurrency {
        senders.push(match args.protocol {
            Protocol::Http => Sender::Http {
                client: client.clone(),
                url: url.clone(),
                key: args.key().to_string(),
            },
            // One HTTP/2 connection per worker, like one HTTP connection each.
            Protocol::Grpc | Protocol::GrpcStream => Sender::Grpc(
                eddy_client::Client::grpc(&args.grpc_url, args.key())
                    .await
                    .with_context(|| format!("connecting to {}", args.grpc_url))?
                    .with_retry(eddy_client::Retry::none())
                    // The same events as over HTTP: ids only where the generator gives them.
                    .with_server_ids(),
            ),
        });
    }
    let mut workers = Vec::new();
    for sender in senders {
        let (generator, totals, hist, errors, next_slot, refused) = (
            generator.clone(),
            totals.clone(),
            hist.clone(),
            errors.clone(),
            next_slot.clone(),
            refused.clone(),
        );
        let batch = args.batch;
        let pace = move |k: u64| interval.map(|iv| start + iv.mul_f64(k as f64));
        if args.protocol == Protocol::GrpcStream {
            let Sender::Grpc(client) = sender else {
                continue;
            };
            let window = args.stream_window;
            workers.push(tokio::spawn(async move {
                stream_worker(
                    client,
                    window,
                    batch,
                    deadline,
                    &generator,
                    &totals,
                    &hist,
                    &errors,
                    || pace(next_slot.fetch_add(1, Ordering::Relaxed)),
                )
                .await
            }));
            continue;
        }
        workers.push(tokio::spawn(async move {
            loop {
                if refused.load(Ordering::Relaxed) {
                    break;
                }
                if interval.is_some() {
                    let due = pace(next_slot.fetch_add(1, Ordering::Relaxed)).unwrap_or(start);
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                } else if Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                let (len, outcome) = sender.send(&generator, batch).await;
                let us = t.elapsed().as_micros().max(1) as u64;
                totals.requests.fetch_add(1, Ordering::Relaxed);
                totals.events.fetch_add(batch as u64, Ordering::Relaxed);
                totals.bytes.fetch_add(len, Ordering::Relaxed);
                match outcome {
                    Ok(()) => {
                        totals.ok_requests.fetch_add(1, Ordering::Relaxed);
                        totals.ok_events.fetch_add(batch as u64, Ordering::Relaxed);
                        let _ = hist.lock().await.record(us);
                    }
                    Err(code) => {
                        if refusal(&code) {
                            refused.store(true, Ordering::Relaxed);
                        }
                        *errors.lock().await.entry(code).or_default() += 1;
                        if Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }
        }));
    }

    let progress = {
        let totals = totals.clone();
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let ev = totals.ok_events.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>5.1}s] requests {:>9}  events ok {:>11}  {:>9} ev/s  failed requests {}",
                    start.elapsed().as_secs_f64(),
                    totals.requests.load(Ordering::Relaxed),
                    ev,
                    ev - last,
                    totals.requests.load(Ordering::Relaxed)
                        - totals.ok_requests.load(Ordering::Relaxed),
                );
                last = ev;
            }
        })
    };
    for w in workers {
        let _ = w.await;
    }
    if interval.is_some() && !refused.load(Ordering::Relaxed) {
        // A paced run lasts its duration: its last slot is before the end, not at it.
        tokio::time::sleep_until(deadline.into()).await;
    }
    progress.abort();
    let acked_s = start.elapsed().as_secs_f64();
    let verified = if args.verify && !refused.load(Ordering::Relaxed) {
        Some(wait_visible(&client, &args).await?)
    } else {
        None
    };
    // Any refusal, by any worker (a stream worker ends at its first error).
    let refused = errors.lock().await.keys().find(|c| refusal(c)).cloned();
    let delivery = match delivery {
        Some(d) => {
            // Let the last events arrive.
            tokio::time::sleep(Duration::from_secs(2)).await;
            d.task.abort();
            let h = d.hist.lock().await;
            let ms = |us: u64| us as f64 / 1000.0;
            Some(json!({
                "received": h.len(),
                "p50": ms(h.value_at_quantile(0.5)), "p90": ms(h.value_at_quantile(0.9)),
                "p99": ms(h.value_at_quantile(0.99)), "max": ms(h.max()),
                "error": *d.error.lock().await,
            }))
        }
        None => None,
    };
    // The run is over when its last request is answered (not after --verify or the feed's tail).
    let elapsed = acked_s;
    let h = hist.lock().await;
    let ms = |us: u64| us as f64 / 1000.0;
    let requests = totals.requests.load(Ordering::Relaxed);
    let ok = totals.ok_requests.load(Ordering::Relaxed);
    let ok_events = totals.ok_events.load(Ordering::Relaxed);
    let summary = json!({
        "url": if args.protocol == Protocol::Http { url.clone() } else { args.grpc_url.clone() },
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "duration_s": (elapsed * 100.0).round() / 100.0,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "target_rate": args.rate,
        "requests": requests,
        "events_sent": totals.events.load(Ordering::Relaxed),
        "events_ok": ok_events,
        "success_rate": if requests > 0 { ok as f64 / requests as f64 } else { 0.0 },
        "events_per_sec": (ok_events as f64 / elapsed).round(),
        "requests_per_sec": (ok as f64 / elapsed).round(),
        "latency_ms": {
            "min": ms(h.min()), "avg": (h.mean() / 10.0).round() / 100.0, "p50": ms(h.value_at_quantile(0.5)),
            "p90": ms(h.value_at_quantile(0.9)), "p99": ms(h.value_at_quantile(0.99)), "max": ms(h.max()),
        },
        "bytes_sent": totals.bytes.load(Ordering::Relaxed),
        "errors_by_status": *errors.lock().await,
        "ws_delivery_ms": delivery,
        "verify": verified.map(|v| json!({
            "log_end_offset": v.end_offset,
            "visible_after_last_ack_s": (v.waited.as_secs_f64() * 1000.0).round() / 1000.0,
            "end_to_end_events_per_sec": (ok_events as f64 / (acked_s + v.waited.as_secs_f64())).round(),
        })),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let l = &summary["latency_ms"];
        println!(
            "requests        {requests} ({} ok, success rate {:.2}%)",
            ok,
            summary["success_rate"].as_f64().unwrap_or(0.0) * 100.0
        );
        println!(
            "events          {} sent, {ok_events} acknowledged",
            summary["events_sent"]
        );
        println!(
            "throughput      {} events/s, {} requests/s over {:.1}s",
            summary["events_per_sec"], summary["requests_per_sec"], elapsed
        );
        println!(
            "latency (ms)    min {} avg {} p50 {} p90 {} p99 {} max {}",
            l["min"], l["avg"], l["p50"], l["p90"], l["p99"], l["max"]
        );
        println!("bytes sent      {}", summary["bytes_sent"]);
        println!("errors          {}", summary["errors_by_status"]);
        if let Some(v) = summary["verify"].as_object() {
            println!(
                "visible         {}s after the last ack (store and rollups at log offset {}): {} events/s end to end",
                v["visible_after_last_ack_s"], v["log_end_offset"], v["end_to_end_events_per_sec"]
            );
        }
        if let Some(d) = summary["ws_delivery_ms"].as_object() {
            println!(
                "ws delivery (ms) {} events received: p50 {} p90 {} p99 {} max {}{}",
                d["received"],
                d["p50"],
                d["p90"],
                d["p99"],
                d["max"],
                d["error"]
                    .as_str()
                    .map(|e| format!(" (feed error: {e})"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(code) = refused {
        bail!(
            "stopped early: the server refused the key ({code}); check --api-key and its scopes (write, and read for --ws-latency)"
        );
    }
    Ok(())
}

/// When everything acknowledged became visible.
struct Visible {
    /// The log's end once the run was over: every acknowledged event is below it.
    end_offset: u64,
    /// From the last acknowledgement until the store and the rollups applied up to it.
    waited: Duration,
}

/// Polls `GET /lag` until the store's and the stream processor's applied offsets reach the
/// log's end as it was when the run ended (at most two minutes).
async fn wait_visible(client: &reqwest::Client, args: &LoadgenArgs) -> Result<Visible> {
    let t = Instant::now();
    let url = format!("{}/lag", args.url.trim_end_matches('/'));
    let lag = || async {
        let r = client
            .get(&url)
            .header("x-api-key", args.key())
            .send()
            .await
            .context("GET /lag for --verify")?;
        if !r.status().is_success() {
            bail!(
                "GET /lag answered {} (--verify needs a key with the read scope)",
                r.status()
            );
        }
        let v: Value = r.json().await.context("GET /lag")?;
        let at = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        Ok((
            at("/end_offset"),
            at("/store/applied_offset"),
            at("/stream/applied_offset"),
        ))
    };
    let (end, _, _) = lag().await?;
    loop {
        let (_, store, stream) = lag().await?;
        if store >= end && stream >= end {
            return Ok(Visible {
                end_offset: end,
                waited: t.elapsed(),
            });
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!(
                "--verify: after 120 s the store is at {store} and the rollups at {stream}, the log at {end}"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One `StreamEvents` call: send batches while the window has room (paced by `due`), take
/// acks as they come; latency of a batch is its send → its ack.
#[allow(clippy::too_many_arguments)]
async fn stream_worker(
    client: eddy_client::Client,
    window: usize,
    batch: usize,
    deadline: Instant,
    generator: &Gen,
    totals: &Totals,
    hist: &Mutex<Histogram<u64>>,
    errors: &Mutex<BTreeMap<String, u64>>,
    mut due: impl FnMut() -> Option<Instant>,
) {
    let mut stream = match client.stream(window).await {
        Ok(s) => s,
        Err(e) => {
            *errors.lock().await.entry(error_kind(&e)).or_default() += 1;
            return;
        }
    };
    let mut sent_at: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut sending = true;
    // The next paced send time, once taken from the schedule.
    let mut next_at: Option<Instant> = None;
    loop {
        if sending && Instant::now() >= deadline {
            sending = false;
            stream.finish();
        }
        if sending && stream.window_free() > 0 {
            let at = *next_at.get_or_insert_with(|| due().unwrap_or_else(Instant::now));
            if at >= deadline {
                sending = false;
                stream.finish();
                continue;
            }
            if at > Instant::now() {
                // Take acks while waiting for the slot, so their latency is not inflated.
                if sent_at.is_empty() {
                    tokio::time::sleep_until(at.into()).await;
                } else {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        ack = stream.next_ack() => {
                            if !take_ack(ack, &mut sent_at, totals, hist, errors).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            }
            next_at = None;
            let events: Vec<eddy_client::Event> = {
                let mut rng = rand::rng();
                (0..batch).map(|_| generator.typed(&mut rng)).collect()
            };
            match stream.send(events).await {
                Ok(seq) => {
                    sent_at.insert(seq, Instant::now());
                    totals.requests.fetch_add(1, Ordering::Relaxed);
                    totals.events.fetch_add(batch as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    *errors.lock().await.entry(error_kind(&e)).or_default() += 1;
                    return;
                }
            }
            continue;
        }
        if sent_at.is_empty() && !sending {
            return;
        }
        let ack = stream.next_ack().await;
        if !take_ack(ack, &mut sent_at, totals, hist, errors).await {
            return;
        }
    }
}

/// Records one ack of a stream; false once the call is over.
async fn take_ack(
    ack: Option<Result<eddy_client::StreamAck, eddy_client::Error>>,
    sent_at: &mut BTreeMap<u64, Instant>,
    totals: &Totals,
    hist: &Mutex<Histogram<u64>>,
    errors: &Mutex<BTreeMap<String, u64>>,
) -> bool {
    match ack {
        Some(Ok(ack)) => {
            let us = sent_at
                .remove(&ack.sequence)
                .map_or(1, |t| t.elapsed().as_micros().max(1) as u64);
            match ack.result {
                Ok(a) => {
                    totals.ok_requests.fetch_add(1, Ordering::Relaxed);
                    totals
                        .ok_events
                        .fetch_add(a.accepted + a.duplicates, Ordering::Relaxed);
                    let _ = hist.lock().await.record(us);
                }
                Err(e) => *errors.lock().await.entry(error_kind(&e)).or_default() += 1,
            }
            true
        }
        Some(Err(e)) => {
            *errors.lock().await.entry(error_kind(&e)).or_default() += 1;
            false
        }
        None => false,
    }
}

/// The WebSocket side of `--ws-latency`.
struct Delivery {
    task: tokio::task::JoinHandle<()>,
    hist: Arc<Mutex<Histogram<u64>>>,
    error: Arc<Mutex<Option<String>>>,
}

/// Subscribes to the events channel and records, for this run's events, receive time minus
/// send time.
async fn ws_listener(args: &LoadgenArgs, run_id: String) -> Result<Delivery> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!(
        "{}/api/v1/ws",
        args.url
            .trim_end_matches('/')
            .replacen("http://", "ws://", 1)
    );
    let mut req = url.as_str().into_client_request()?;
    req.headers_mut()
        .insert("x-api-key", args.key().parse().context("API key header")?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .context("connecting the WebSocket (does the key have the read scope?)")?;
    ws.send(Message::Text(
        json!({"type": "subscribe", "channels": ["events"]})
            .to_string()
            .into(),
    ))
    .await?;
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).context("histogram")?,
    ));
    let error: Arc<Mutex<Option<String>>> = Arc::default();
    let (h, err) = (hist.clone(), error.clone());
    let task = tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let now = now_us();
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if v["type"] == "error" {
                *err.lock().await = v["error"].as_str().map(str::to_string);
                return;
            }
            let props = &v["data"]["properties"];
            if props["lg_run"].as_str() != Some(run_id.as_str()) {
                continue;
            }
            // Properties are numbers (f64); µs since the epoch stay exact below 2^53.
            if let Some(sent) = props["lg_sent_us"].as_f64() {
                let _ = h
                    .lock()
                    .await
                    .record(u64::try_from(now - sent as i64).unwrap_or(0).max(1));
            }
        }
    });
    Ok(Delivery { task, hist, error })
}
