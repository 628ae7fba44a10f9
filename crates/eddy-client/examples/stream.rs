//! Streams batches over gRPC `StreamEvents`, reading acks as they come, with at most 4
//! batches unacknowledged.
//!
//! ```sh
//! EDDY_API_KEY=$(cat data/admin.key) cargo run -p eddy-client --example stream
//! ```

use eddy_client::{Client, Event};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = std::env::var("EDDY_API_KEY").map_err(|_| "set EDDY_API_KEY")?;
    let url = std::env::var("EDDY_GRPC_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let client = Client::grpc(&url, &key).await?;
    let mut stream = client.stream(4).await?;
    let batches = 20u64;
    let (mut sent, mut acked, mut accepted) = (0u64, 0u64, 0u64);
    while acked < batches {
        // Send while the window has room, otherwise take an ack.
        if sent < batches && stream.window_free() > 0 {
            let batch = (0..1000)
                .map(|i| Event::reading(format!("stream-{}", i % 8)).metric("load", i as f64))
                .collect();
            stream.send(batch).await?;
            sent += 1;
            continue;
        }
        match stream.next_ack().await {
            Some(Ok(ack)) => {
                accepted += ack.result?.accepted;
                acked += 1;
            }
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    stream.finish();
    println!("{acked} batches acknowledged, {accepted} events stored");
    Ok(())
}
