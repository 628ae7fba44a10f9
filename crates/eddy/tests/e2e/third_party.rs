//! Third-party gRPC clients against the real server: grpcurl through server reflection only
//! (`tests/grpc/grpcurl_check.sh`), and Python grpcio stubs generated from the repository's
//! protos for a bidirectional `StreamEvents` (`tests/grpc/bidi_stream.py`). CI installs both
//! (`.ci/run`: `EDDY_GRPCURL`, `EDDY_PYTHON`); elsewhere a missing tool is reported and the
//! test passes only outside CI.

use std::path::PathBuf;
use std::process::Command;

use crate::common::TestServer;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tool named by `var` (or `default`), if it runs with `probe`.
fn tool(var: &str, default: &str, probe: &[&str]) -> Option<String> {
    let t = std::env::var(var).unwrap_or_else(|_| default.into());
    match Command::new(&t).args(probe).output() {
        Ok(o) if o.status.success() => Some(t),
        other => {
            assert!(
                std::env::var("CI").is_err(),
                "`{t}` is required in CI ({var} names it): {other:?}"
            );
            eprintln!("skipped: `{t}` ({var}) not usable: {other:?}");
            None
        }
    }
}

fn addr(s: &TestServer) -> String {
    s.grpc_url.trim_start_matches("http://").to_string()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}

#[tokio::test]
async fn grpcurl_works_through_reflection_alone() {
    let Some(grpcurl) = tool("EDDY_GRPCURL", "grpcurl", &["-version"]) else {
        return;
    };
    let s = TestServer::spawn().await;
    run(Command::new("bash")
        .arg(repo().join("tests/grpc/grpcurl_check.sh"))
        .args([grpcurl.as_str(), &addr(&s), &s.admin_key]));
}

#[tokio::test]
async fn python_grpcio_streams_batches_from_the_repository_protos() {
    let Some(python) = tool(
        "EDDY_PYTHON",
        "python3",
        &["-c", "import grpc, grpc_tools, google.protobuf"],
    ) else {
        return;
    };
    let s = TestServer::spawn().await;
    let out = tempfile::tempdir().unwrap();
    run(Command::new(python)
        .arg(repo().join("tests/grpc/bidi_stream.py"))
        .args(["--addr", &addr(&s), "--key", &s.admin_key, "--proto-dir"])
        .arg(repo().join("proto"))
        .arg("--out-dir")
        .arg(out.path()));
}
