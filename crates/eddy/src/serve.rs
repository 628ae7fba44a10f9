//! `eddy serve`: lock the data dir, open the server, listen, and shut down gracefully on
//! SIGINT/SIGTERM.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::{Context, Result};
use eddy_model::SystemClock;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServeArgs};

fn init_tracing(format: LogFormat, level: &str) -> Result<()> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| anyhow::anyhow!("invalid --log-level / EDDY_LOG_LEVEL `{level}`: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let r = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    r.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// Runs the server until SIGINT or SIGTERM.
pub(crate) fn run(args: ServeArgs) -> Result<()> {
    let settings = args.resolve()?;
    init_tracing(settings.log_format, &settings.log_level)?;
    // Bind first: a taken port must fail before the data dir is created or a key printed.
    let listener = std::net::TcpListener::bind(settings.http_addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| {
            format!(
                "cannot listen on --http-addr / EDDY_HTTP_ADDR {} (is another server using it?)",
                settings.http_addr
            )
        })?;
    let grpc_listener = match settings.grpc_addr {
        None => None,
        Some(a) => Some(
            std::net::TcpListener::bind(a)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .with_context(|| {
                    format!(
                        "cannot listen on --grpc-addr / EDDY_GRPC_ADDR {a} (is another server using it? an empty value turns gRPC off)"
                    )
                })?,
        ),
    };
    let data_dir = settings.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let lock_path = data_dir.join("eddy.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if let Err(e) = lock.try_lock() {
        anyhow::bail!(
            "data dir {} is in use by another eddy process (lock {} is held: {e}); stop it or choose another --data-dir",
            data_dir.display(),
            lock_path.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .context("cannot use the listening socket")?;
        let grpc_config = grpc_listener.as_ref().map(|_| settings.grpc.clone());
        let mut opened = crate::compose::open(settings.server, settings.engines, grpc_config, Arc::new(SystemClock))?;
        if let Some(key) = &opened.generated_admin_key {
            let path = data_dir.join("admin.key");
            let mut out = std::io::stdout().lock();
            writeln!(out, "\n  Eddy created the default tenant and an admin key (shown once):\n\n    {key}\n")?;
            writeln!(out, "  It is saved in {} (mode 0600). It administers tenants and keys,", path.display())?;
            writeln!(out, "  and reads and writes the default tenant.\n")?;
            out.flush()?;
        }
        // One signal stops both front ends.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send_replace(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let grpc_file = data_dir.join("eddy.grpc-addr");
        let _ = std::fs::remove_file(&grpc_file);
        let grpc_task = match (opened.grpc.take(), grpc_listener) {
            (Some(grpc), Some(l)) => {
                let l = tokio::net::TcpListener::from_std(l)
                    .context("cannot use the gRPC listening socket")?;
                let grpc_addr = l.local_addr()?;
                std::fs::write(grpc_file.with_extension("tmp"), grpc_addr.to_string())?;
                std::fs::rename(grpc_file.with_extension("tmp"), &grpc_file)?;
                tracing::info!(%grpc_addr, "eddy gRPC listening on {grpc_addr}");
                Some(tokio::spawn(grpc.serve(l, stopped(stop_rx.clone()))))
            }
            _ => None,
        };
        let addr = listener.local_addr()?;
        // Scripts and tests that ask for port 0 learn the real address from this file (the
        // gRPC one, when on, from `eddy.grpc-addr`, written before it).
        let addr_file = data_dir.join("eddy.addr");
        std::fs::write(addr_file.with_extension("addr.tmp"), addr.to_string())?;
        std::fs::rename(addr_file.with_extension("addr.tmp"), &addr_file)?;
        tracing::info!(%addr, data_dir = %data_dir.display(), version = env!("CARGO_PKG_VERSION"), "eddy listening on http://{addr}");
        let served = opened.server.serve(listener, stopped(stop_rx)).await;
        // gRPC streams end after their in-flight acks before the engines stop.
        let grpc_served = match grpc_task {
            Some(t) => match t.await {
                Ok(r) => r.map_err(|e| anyhow::anyhow!("{e}")),
                Err(e) => Err(anyhow::anyhow!("the gRPC server task failed: {e}")),
            },
            None => Ok(()),
        };
        // The engines are flushed and persisted whatever ended the serving.
        opened.engines.shutdown().await?;
        served.map_err(|e| anyhow::anyhow!("{e}"))?;
        grpc_served?;
        let _ = std::fs::remove_file(&addr_file);
        let _ = std::fs::remove_file(&grpc_file);
        Ok::<_, anyhow::Error>(())
    })?;
    drop(lock);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
