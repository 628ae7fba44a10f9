//! The processor's per-event work on batch records, run once, for instruction counts that do
//! not move with the host's speed (criterion's timings on this VM swing by ±50 %):
//!
//! ```text
//! cargo build --release -p eddy-stream --example process_batches
//! valgrind --tool=callgrind target/release/examples/process_batches rows   # or: owned
//! callgrind_annotate --inclusive=yes callgrind.out.* | grep process_batches::process
//! ```
//!
//! A second argument spreads the readings over that many seconds of event time (default 36):
//! `rows 36000` gives every series ~120 minute windows, as a long run at the default horizons
//! holds.
//!
//! 120k readings (1000 devices × 3 metrics, 36 s of event time) in batches of 1000, applied to
//! the rollups and the default anomaly rule, read from the columns as borrowed rows (how the
//! processor reads them) or as owned events (how it read them before).

use eddy_model::Event;
use eddy_model::columns::{ColumnsBuilder, EventColumns};
use eddy_stream::{TenantAlerts, TenantRollups};
const SEC: i64 = 1_000_000_000;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let owned = std::env::args().nth(1).as_deref() == Some("owned");
    // The same readings as the `apply` bench's 600k, fewer of them (callgrind is ~50x slower).
    let n = 120_000usize;
    let t0 = 1_764_000_000 * SEC;
    let span: i64 = match std::env::args().nth(2) {
        Some(s) => s.parse()?,
        None => 36,
    };
    let step = span * SEC / n as i64;
    let evs: Vec<Event> = (0..n)
        .map(|i| {
            let time = t0 + i as i64 * step;
            let mut e = Event {
                tenant: "t".into(),
                event_id: format!("r{i}"),
                time,
                received_at: time,
                r#type: "reading".into(),
                device_id: Some(format!("sensor-{:04}", (i * 7919) % 1000)),
                ..Default::default()
            };
            let x = (i % 97) as f64;
            for (k, v) in [
                ("temperature", 20.0 + x / 20.0),
                ("humidity", 40.0 + x / 10.0),
                ("power", x),
            ] {
                e.metrics.insert(k.into(), v);
            }
            e
        })
        .collect();
    let batches: Vec<EventColumns> = evs
        .chunks(1000)
        .map(|c| {
            let mut b = ColumnsBuilder::default();
            for e in c {
                b.push(e)?;
            }
            Ok(EventColumns {
                tenant: "t".into(),
                batch: b.finish()?,
            })
        })
        .collect::<Result<_, eddy_model::Error>>()?;
    let mut r = TenantRollups::default();
    let mut a = TenantAlerts::with_default_rule(0);
    let mut notices = Vec::new();
    let mut i = 0u64;
    for cols in &batches {
        process(&mut r, &mut a, &mut notices, cols, owned, &mut i);
    }
    println!("{} windows, {} alert transitions", r.len(), notices.len());
    Ok(())
}
#[inline(never)]
fn process(
    r: &mut TenantRollups,
    a: &mut TenantAlerts,
    notices: &mut Vec<eddy_stream::AlertNotice>,
    cols: &EventColumns,
    owned: bool,
    i: &mut u64,
) {
    if owned {
        for e in cols.events() {
            r.apply(&e, *i, 5 * SEC);
            a.observe(&e, notices);
            *i += 1;
        }
    } else {
        for e in cols.rows() {
            r.apply(&e, *i, 5 * SEC);
            a.observe(&e, notices);
            *i += 1;
        }
    }
}
