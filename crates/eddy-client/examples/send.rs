//! Sends readings through a batcher, over gRPC (or HTTP with `--http`), then reads a count
//! back with SQL.
//!
//! ```sh
//! cargo run --release                       # in one terminal: the server
//! EDDY_API_KEY=$(cat data/admin.key) cargo run -p eddy-client --example send
//! EDDY_API_KEY=$(cat data/admin.key) cargo run -p eddy-client --example send -- --http
//! ```

use std::time::Duration;

use eddy_client::{BatchConfig, Client, Event};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = std::env::var("EDDY_API_KEY").map_err(|_| "set EDDY_API_KEY")?;
    let client = if std::env::args().any(|a| a == "--http") {
        Client::http(
            &std::env::var("EDDY_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into()),
            &key,
        )?
    } else {
        Client::grpc(
            &std::env::var("EDDY_GRPC_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into()),
            &key,
        )
        .await?
    };
    let batcher = client.batcher(BatchConfig {
        max_events: 500,
        linger: Duration::from_millis(20),
        ..BatchConfig::default()
    });
    for i in 0..2_000 {
        let device = format!("example-{}", i % 4);
        batcher
            .push(Event::reading(device).metric("temperature", 20.0 + (i % 10) as f64))
            .await?;
    }
    let totals = batcher.close().await?;
    println!(
        "sent {} batches: {} accepted, {} duplicates, {} failed",
        totals.batches,
        totals.accepted,
        totals.duplicates,
        totals.failed.len()
    );
    let rows = client
        .sql("SELECT count(*) AS n FROM events WHERE device_id LIKE 'example-%'")
        .await?;
    println!(
        "events of the example devices visible so far: {}",
        rows[0]["n"]
    );
    Ok(())
}
