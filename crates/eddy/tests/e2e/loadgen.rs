//! `eddy loadgen` against the real server: `--rate` sends exactly `rate × duration` events
//! (a batch above the rate is lowered to it), `--verify` returns once they are visible, the key
//! falls back to `<data-dir>/admin.key`, and
//! a refused key stops the run at once with a non-zero exit naming the refusal.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::TestServer;

fn loadgen(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eddy"));
    for (k, _) in std::env::vars() {
        if k.starts_with("EDDY_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("loadgen").args(args).output().unwrap()
}

fn summary(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn loadgen_meets_its_rate_finds_the_admin_key_and_stops_on_a_refused_key() {
    let s = TestServer::spawn().await;
    let dir = s.data_dir();
    let dir = dir.to_str().unwrap();

    // No --api-key: the admin key of the data dir. 50/s for 3 s with 100 per request: 150.
    let v = summary(&loadgen(&[
        "--url",
        &s.url,
        "--data-dir",
        dir,
        "--rate",
        "50",
        "--duration",
        "3s",
        "--batch",
        "100",
        "--concurrency",
        "2",
        "--verify",
        "--json",
    ]));
    assert_eq!(v["batch"], 50, "{v}");
    assert_eq!(v["events_ok"], 150, "{v}");
    assert_eq!(v["events_per_sec"], 50.0, "over the run's 3 s: {v}");
    // --verify waited until the store and the rollups applied it all: no waiting here.
    let verify = &v["verify"];
    assert!(
        verify["end_to_end_events_per_sec"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    assert!(verify["log_end_offset"].as_u64().unwrap() > 0, "{v}");
    let (_, lag) = s.get("/lag", &s.admin_key).await;
    assert_eq!(
        (&lag["store"]["lag"], &lag["stream"]["lag"]),
        (&0.into(), &0.into()),
        "{lag}"
    );
    let (_, n) = s
        .post(
            "/api/v1/query",
            &s.admin_key,
            r#"{"sql": "SELECT count(*) AS n FROM events"}"#,
        )
        .await;
    assert_eq!(n["data"][0]["n"], 150, "{n}");

    // A refused key: the run ends after the first answers, not after its duration.
    let t = Instant::now();
    let out = loadgen(&[
        "--url",
        &s.url,
        "--api-key",
        "eddy_not_a_key_of_this_server_000000000000000000",
        "--duration",
        "60s",
        "--concurrency",
        "2",
    ]);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "it ran on: {:?}",
        t.elapsed()
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the key (401)"), "{err}");

    // Neither a key nor an admin key to fall back to.
    let empty = tempfile::tempdir().unwrap();
    let out = loadgen(&[
        "--url",
        &s.url,
        "--data-dir",
        empty.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no --api-key"), "{err}");
}
