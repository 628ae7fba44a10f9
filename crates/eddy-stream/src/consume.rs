//! The processor's log consumer loop: applying every record (events to rollups and alerts, rule
//! changes, alert actions, tenant deletions), the live feed and notices of what it changed,
//! periodic eviction and dead-man checks, and when to checkpoint. Must not touch the checkpoint
//! file format or the rollup files.

use std::time::{Duration, Instant};

use eddy_log::Record;
use eddy_log::runner::{Consumer, ReadErrors, RunConfig, Step, run_consumer};
use eddy_model::codec::{self, Decoded};
use eddy_model::{AsEventRef, Entry, EventRef, columns};

use crate::alerts::{AlertNotice, Rule, TenantAlerts};
use crate::checkpoint::State;
use crate::feed::{Live, RollupUpdate};
use crate::processor::{EVICT_INTERVAL, MAX_PRESSURE, Processor};
use crate::rollup::{Resolution, TenantRollups};
use crate::{Error, FastMap, Result, poisoned, slot_with};

/// How the processor reads the log: 8192 records at a time, a look at its timers at least every
/// 200 ms while idle; a read error is retried after a second (the log may recover, or the server
/// is stopping: retry, don't die).
const RUN: RunConfig = RunConfig {
    name: "stream processor",
    batch_records: 8192,
    poll: Duration::from_millis(200),
    read_errors: ReadErrors::Retry(Duration::from_secs(1)),
};

/// The processing loop's state between rounds of [`run_consumer`].
struct Consume<'a> {
    p: &'a Processor,
    last_checkpoint: Instant,
    /// A checkpoint writes the whole state, so its cost grows with it: the next one waits at
    /// least `CHECKPOINT_DUTY` times as long as the last one took (≤ 5% of the time goes to
    /// checkpoints; replay after a crash is correspondingly longer). The loop only pauses to
    /// snapshot the state; serializing and writing happen on another thread.
    gap: Duration,
    /// The offset of the last checkpoint written and committed.
    checkpointed: u64,
    lateness: i64,
    last_evict: Instant,
    last_silence_check: Instant,
}

impl Consumer for Consume<'_> {
    type Error = Error;

    async fn before_read(&mut self) -> Result<Step> {
        let p = self.p;
        if let Some(done) = p.finish_checkpoint(false).await {
            self.checkpointed = done.unwrap_or(self.checkpointed);
            self.gap = p.paced();
        }
        // Eviction walks every window, so it runs every few seconds, not per batch (and
        // also while idle: windows close by event time, not by traffic).
        if self.last_evict.elapsed() >= p.config.evict_interval {
            self.last_evict = Instant::now();
            p.evict()?;
        }
        Ok(Step::Read)
    }

    async fn apply(&mut self, records: &[Record]) -> Result<()> {
        let p = self.p;
        let mut late = 0u64;
        let mut events = 0u64;
        let mut notices = Vec::new();
        {
            let mut s = p.state.write().map_err(|_| poisoned())?;
            let State {
                offset,
                tenants,
                alerts,
            } = &mut *s;
            for rec in records {
                let mut apply =
                    |tenant: &str, rows: &mut dyn Iterator<Item = (u64, EventRef<'_>)>| {
                        let (n, l) = p.apply_events(
                            tenants,
                            alerts,
                            tenant,
                            rows,
                            self.lateness,
                            &mut notices,
                        );
                        events += n;
                        late += l;
                    };
                match codec::decode(&rec.payload) {
                    Ok(Decoded::Event(ev)) => apply(
                        &ev.tenant,
                        &mut std::iter::once((columns::position(rec.offset, 0), ev.as_event_ref())),
                    ),
                    Ok(Decoded::Events(cols)) => apply(
                        &cols.tenant,
                        &mut cols
                            .rows()
                            .enumerate()
                            .map(|(i, e)| (columns::position(rec.offset, i), e)),
                    ),
                    Ok(Decoded::Other(Entry::TenantDeleted(t))) => {
                        tenants.remove(&t.tenant);
                        p.flusher.forget(&t.tenant);
                        alerts.remove(&t.tenant);
                        p.feed.drop_tenant(&t.tenant);
                    }
                    Ok(Decoded::Other(Entry::RuleChange(c))) => {
                        let rule = match c.rule_json.as_deref().map(serde_json::from_str::<Rule>) {
                            Some(Ok(r)) => Some(r),
                            None => None,
                            Some(Err(e)) => {
                                tracing::warn!(offset = rec.offset, error = %e, "undecodable rule skipped by the stream processor");
                                *offset = rec.offset + 1;
                                continue;
                            }
                        };
                        let start = notices.len();
                        alerts
                            .entry(c.tenant.clone())
                            .or_insert_with(|| TenantAlerts::with_default_rule(c.at))
                            .change_rule(&c.tenant, &c.rule_id, rule, c.at, &mut notices);
                        p.feed
                            .publish(&c.tenant, notices[start..].iter().cloned().map(Live::Alert));
                    }
                    Ok(Decoded::Other(Entry::AlertAction(a))) => {
                        if let Some(n) = alerts.get_mut(&a.tenant).and_then(|t| {
                            t.act(&a.tenant, &a.alert_id, &a.action, a.at, a.note.clone())
                        }) {
                            p.feed.publish(&a.tenant, [Live::Alert(n.clone())]);
                            notices.push(n);
                        }
                    }
                    Ok(Decoded::Other(_) | Decoded::Unknown) => {}
                    Err(e) => {
                        tracing::warn!(offset = rec.offset, error = %e, "undecodable log entry skipped by the stream processor")
                    }
                }
                *offset = rec.offset + 1;
            }
        }
        p.notify(notices);
        p.applied.send_replace(p.applied_offset());
        metrics::counter!("eddy_stream_events_total").increment(events);
        if late > 0 {
            metrics::counter!("eddy_stream_late_total").increment(late);
        }
        if self.last_checkpoint.elapsed() >= self.gap && p.start_checkpoint() {
            self.last_checkpoint = Instant::now();
        }
        Ok(())
    }

    async fn idle(&mut self) -> Result<()> {
        let p = self.p;
        // Caught up: silence is real now (not records still to be replayed).
        if self.last_silence_check.elapsed() >= EVICT_INTERVAL {
            self.last_silence_check = Instant::now();
            p.check_silence()?;
        }
        if p.applied_offset() > self.checkpointed
            && self.last_checkpoint.elapsed() >= self.gap
            && p.start_checkpoint()
        {
            self.last_checkpoint = Instant::now();
        }
        Ok(())
    }

    /// Stopping: the checkpoint in flight, then a final one unless it covers everything.
    async fn finish(&mut self) -> Result<()> {
        let p = self.p;
        if let Some(done) = p.finish_checkpoint(true).await {
            self.checkpointed = done.unwrap_or(self.checkpointed);
        }
        if p.applied_offset() > self.checkpointed || self.checkpointed == 0 {
            p.checkpoint().await?;
        }
        Ok(())
    }
}

impl Processor {
    /// The processing loop: from the checkpoint's offset until the stop signal (see
    /// [`Consume`]).
    pub(crate) async fn run(&self) -> Result<()> {
        let from = self.applied_offset();
        let mut consume = Consume {
            p: self,
            last_checkpoint: Instant::now(),
            gap: self.config.checkpoint_interval,
            checkpointed: from,
            lateness: self.config.lateness_ns(),
            last_evict: Instant::now(),
            last_silence_check: Instant::now(),
        };
        run_consumer(
            self.log.as_ref(),
            &mut consume,
            from,
            self.task.stop_signal(),
            RUN,
        )
        .await
    }

    /// Applies one record's events — all of one tenant, with their positions — to the tenant's
    /// rollups and alerts (looked up once per record, not per event) and offers each to the
    /// live feed. Answers (events applied, late resolution counts).
    fn apply_events(
        &self,
        tenants: &mut FastMap<String, TenantRollups>,
        alerts: &mut FastMap<String, TenantAlerts>,
        tenant: &str,
        rows: &mut dyn Iterator<Item = (u64, EventRef<'_>)>,
        lateness: i64,
        notices: &mut Vec<AlertNotice>,
    ) -> (u64, u64) {
        let mut rows = rows.peekable();
        let Some(&(_, first)) = rows.peek() else {
            return (0, 0);
        };
        let rollups = slot_with(tenants, tenant, TenantRollups::default);
        let tenant_alerts = slot_with(alerts, tenant, || {
            TenantAlerts::with_default_rule(first.received_at)
        });
        let (mut events, mut late) = (0, 0);
        for (position, ev) in rows {
            let applied = rollups.apply(&ev, position, lateness);
            late += u64::from(applied.late);
            events += 1;
            let start = notices.len();
            tenant_alerts.observe(&ev, notices);
            self.publish_event(&ev, rollups, &notices[start..]);
        }
        (events, late)
    }

    /// Offers an applied event, the rollup windows it changed and the alert transitions it
    /// caused to the tenant's live subscribers (the owned event is built only for an events
    /// subscriber).
    fn publish_event(&self, ev: &EventRef<'_>, rollups: &TenantRollups, notices: &[AlertNotice]) {
        use crate::Channel;
        let rollups_watched = self.feed.watched(ev.tenant, Channel::Rollups);
        let events_watched = self.feed.watched(ev.tenant, Channel::Events);
        if !rollups_watched && notices.is_empty() && !events_watched {
            return;
        }
        let device = ev.device_id.unwrap_or("");
        let r = Resolution::Minute;
        let start = r.window_start(ev.time);
        let updates: Vec<Live> = ev
            .metrics
            .names()
            .filter(|_| rollups_watched)
            .filter_map(|m| {
                let (_, _, agg) = rollups
                    .metric_windows(r, m, Some(device), start, start + 1)
                    .next()?;
                Some(Live::Rollup(RollupUpdate::new(device, m, r, start, &agg)))
            })
            .collect();
        self.feed.publish(
            ev.tenant,
            events_watched
                .then(|| Live::Event(ev.to_event()))
                .into_iter()
                .chain(updates)
                .chain(notices.iter().cloned().map(Live::Alert)),
        );
    }

    /// Hands alert transitions to the notifier, dropping (and counting) what does not fit.
    fn notify(&self, notices: Vec<AlertNotice>) {
        for n in notices {
            metrics::counter!("eddy_stream_alert_transitions_total", "transition" => n.transition.name()).increment(1);
            if self.notices.try_send(n).is_err() {
                metrics::counter!("eddy_stream_alert_notices_dropped_total").increment(1);
            }
        }
    }

    /// Drops what memory no longer needs: persisted windows past their horizon (none while a
    /// flush is unwritten), idle alert state. Over `max_windows`, the horizons are halved
    /// (pass after pass, down to 1/2^20) until memory fits; they grow back one step per pass
    /// once it is under half the budget.
    fn evict(&self) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let lateness = self.config.lateness_ns();
        let budget = self.config.max_windows;
        let mut s = self.state.write().map_err(|_| poisoned())?;
        // Read under the lock: a checkpoint takes flushes under it too.
        let hold = self.flusher.unwritten();
        let mut shift = self.pressure.load(SeqCst);
        let total = loop {
            for t in s.tenants.values_mut() {
                t.evict(lateness, |r| {
                    if hold {
                        i64::MAX
                    } else {
                        self.config.horizon_ns(r) >> shift
                    }
                });
            }
            let total: usize = s.tenants.values().map(TenantRollups::len).sum();
            if hold || budget == 0 || total <= budget || shift >= MAX_PRESSURE {
                break total;
            }
            shift += 1;
        };
        if shift > 0 && total < budget / 2 {
            shift -= 1;
        }
        self.pressure.store(shift, SeqCst);
        metrics::gauge!("eddy_stream_horizon_divisor").set(f64::from(1u32 << shift));
        metrics::gauge!("eddy_stream_windows").set(total as f64);
        let now = self.clock.now_ns();
        for t in s.alerts.values_mut() {
            t.evict(now);
        }
        metrics::gauge!("eddy_stream_alert_series").set(
            s.alerts
                .values()
                .map(TenantAlerts::tracked_series)
                .sum::<usize>() as f64,
        );
        Ok(())
    }

    /// Opens dead-man alerts for series silent past their rule's limit.
    fn check_silence(&self) -> Result<()> {
        let now = self.clock.now_ns();
        let mut notices = Vec::new();
        {
            let mut s = self.state.write().map_err(|_| poisoned())?;
            for (tenant, t) in &mut s.alerts {
                let start = notices.len();
                t.check_silence(tenant, now, &mut notices);
                self.feed
                    .publish(tenant, notices[start..].iter().cloned().map(Live::Alert));
            }
        }
        self.notify(notices);
        Ok(())
    }
}
