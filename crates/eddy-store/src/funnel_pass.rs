//! The per-user pass of a funnel: the rows that match any of its steps, grouped by user and
//! walked in `(time, offset)` order by [`journeys::funnel_user`].
//!
//! Two phases, each one task per core of the query runtime:
//! 1. **Partition.** Each task hashes the user ids of its share of the result batches (128-bit
//!    xxh3) and appends a 32-byte [`Row`] to one of [`PARTS`] partitions picked by the hash's top
//!    bits. Appends go to a few hundred sequential streams, which the cache handles well, where
//!    a lookup per row in one table of all users stalled on memory.
//! 2. **Walk.** Each task takes whole partitions. One partition holds about 1/[`PARTS`] of the
//!    users, so grouping its rows by user (a small hash map and a counting sort into a reused
//!    buffer) stays in cache. No user spans two partitions, so tallies merge by addition.
//!
//! Users are told apart by 72 bits of the hash (8 pick the partition, 64 are the key): a
//! collision among 10^8 distinct users of one funnel has odds below 10^-6.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;

use crate::journeys::{self, FunnelTally, StepEvent};
use crate::rows::{column, ints, strings};
use crate::{Error, Result};

/// Partitions of the users (a power of two: the top bits of the hash pick one).
const PARTS: usize = 256;
const PART_SHIFT: u32 = 128 - PARTS.trailing_zeros();

/// No breakdown value (the event lacks the field).
pub(crate) const NO_VALUE: u32 = u32::MAX;

/// One matching event, with its user's key and its breakdown value's id.
#[derive(Debug, Clone, Copy)]
struct Row {
    user: u64,
    time: i64,
    offset: u64,
    steps: u32,
    value: u32,
}

/// One task's share of the rows, by partition, and the breakdown values its ids name.
struct Partitioned {
    parts: Vec<Vec<Row>>,
    values: Vec<String>,
}

/// The overall tally and one per breakdown value (`None`: the entry event lacks the field).
pub(crate) type Tallies = (FunnelTally, HashMap<Option<String>, FunnelTally>);

/// Columns of `batches`: `user_id`, `t` (ns), `offset`, `mask` (bit `k`: step `k`) and, with
/// a breakdown, `b` (its value). Runs both phases on `tasks` tasks of the current runtime.
pub(crate) async fn tally(
    batches: Vec<RecordBatch>,
    tasks: usize,
    steps: usize,
    window_ns: i64,
    breakdown: bool,
) -> Result<Tallies> {
    let tasks = tasks.max(1);
    let batches = Arc::new(batches);
    let parts = on_tasks(tasks, move |k| {
        partition(batches.iter().skip(k).step_by(tasks), breakdown)
    })
    .await?;
    // One id per breakdown value over all tasks; `renumber[task][local id]` is the global id.
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut renumber: Vec<Vec<u32>> = Vec::with_capacity(parts.len());
    for p in &parts {
        let mut map = Vec::with_capacity(p.values.len());
        for v in &p.values {
            let next = u32::try_from(names.len()).unwrap_or(NO_VALUE);
            let id = *ids.entry(v.as_str()).or_insert(next);
            if id == next {
                names.push(v.clone());
            }
            map.push(id);
        }
        renumber.push(map);
    }
    drop(ids);
    let shared = Arc::new((parts, renumber));
    let tallies = on_tasks(tasks, move |k| {
        let (parts, renumber) = &*shared;
        Ok(walk(
            parts,
            renumber,
            (k..PARTS).step_by(tasks),
            steps,
            window_ns,
            breakdown,
        ))
    })
    .await?;
    let mut overall = FunnelTally::new(steps);
    let mut groups: HashMap<Option<String>, FunnelTally> = HashMap::new();
    for (o, g) in tallies {
        overall.merge(o);
        for (v, t) in g {
            let name = (v != NO_VALUE).then(|| names.get(v as usize).cloned().unwrap_or_default());
            match groups.get_mut(&name) {
                Some(mine) => mine.merge(t),
                None => {
                    groups.insert(name, t);
                }
            }
        }
    }
    Ok((overall, groups))
}

/// Runs `f(0..tasks)` on as many tasks of the current runtime and returns their results in
/// order.
async fn on_tasks<T, F>(tasks: usize, f: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Result<T> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let handles: Vec<_> = (0..tasks)
        .map(|k| {
            let f = f.clone();
            tokio::spawn(async move { f(k) })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks);
    for h in handles {
        out.push(h.await.map_err(|e| Error::Task(e.to_string()))??);
    }
    Ok(out)
}

/// Phase 1: the rows of `batches`, each appended to its user's partition.
fn partition<'a>(
    batches: impl Iterator<Item = &'a RecordBatch> + Clone,
    breakdown: bool,
) -> Result<Partitioned> {
    let rows: usize = batches.clone().map(RecordBatch::num_rows).sum();
    // Hashes spread users evenly; a little slack keeps most partitions from growing.
    let per_part = rows / PARTS + rows / PARTS / 8 + 16;
    let mut parts: Vec<Vec<Row>> = (0..PARTS).map(|_| Vec::with_capacity(per_part)).collect();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut values: Vec<String> = Vec::new();
    for b in batches {
        let user = strings(b, "user_id")?;
        let (time, mask) = (ints(b, "t")?, ints(b, "mask")?);
        let offset = column(b, "offset")?.as_primitive::<UInt64Type>();
        let b_col = if breakdown {
            Some(strings(b, "b")?)
        } else {
            None
        };
        for r in 0..b.num_rows() {
            let h = xxhash_rust::xxh3::xxh3_128(user.value(r).as_bytes());
            let value = match &b_col {
                Some(c) if !c.is_null(r) => {
                    let v = c.value(r);
                    match ids.get(v) {
                        Some(id) => *id,
                        None => {
                            let id = u32::try_from(values.len()).unwrap_or(NO_VALUE);
                            values.push(v.to_string());
                            ids.insert(v.to_string(), id);
                            id
                        }
                    }
                }
                _ => NO_VALUE,
            };
            // The shift leaves only the top bits: always below PARTS.
            parts[(h >> PART_SHIFT) as usize].push(Row {
                user: h as u64,
                time: time.value(r),
                offset: offset.value(r),
                steps: u32::try_from(mask.value(r)).unwrap_or(0),
                value,
            });
        }
    }
    Ok(Partitioned { parts, values })
}

/// Phase 2: the users of partitions `mine`, each walked through the funnel. Returns the overall
/// tally and one per breakdown value id ([`NO_VALUE`]: none).
fn walk(
    parts: &[Partitioned],
    renumber: &[Vec<u32>],
    mine: impl Iterator<Item = usize>,
    steps: usize,
    window_ns: i64,
    breakdown: bool,
) -> (FunnelTally, HashMap<u32, FunnelTally>) {
    let mut overall = FunnelTally::new(steps);
    let mut groups: HashMap<u32, FunnelTally> = HashMap::new();
    // Reused across partitions: user keys to dense ids, rows per user, the grouped rows.
    let mut users: HashMap<u64, u32, foldhash::fast::RandomState> = HashMap::default();
    let (mut row_users, mut counts, mut starts) = (Vec::new(), Vec::new(), Vec::new());
    let mut grouped: Vec<Row> = Vec::new();
    let mut one: Vec<StepEvent> = Vec::new();
    let mut entry_values: Vec<u32> = Vec::new();
    for p in mine {
        users.clear();
        row_users.clear();
        counts.clear();
        let rows = || {
            parts.iter().zip(renumber).flat_map(move |(t, map)| {
                t.parts.get(p).into_iter().flatten().map(move |r| (r, map))
            })
        };
        for (r, _) in rows() {
            let next = u32::try_from(counts.len()).unwrap_or(u32::MAX);
            let id = *users.entry(r.user).or_insert(next);
            if id == next {
                counts.push(0u32);
            }
            counts[id as usize] += 1;
            row_users.push(id);
        }
        // A counting sort: each user's rows at its own offset of `grouped`.
        starts.clear();
        let mut total = 0usize;
        for c in &counts {
            starts.push(total);
            total += *c as usize;
        }
        starts.push(total);
        let mut fill = starts.clone();
        grouped.clear();
        grouped.resize(
            total,
            Row {
                user: 0,
                time: 0,
                offset: 0,
                steps: 0,
                value: NO_VALUE,
            },
        );
        for ((r, map), id) in rows().zip(&row_users) {
            let at = &mut fill[*id as usize];
            grouped[*at] = Row {
                value: map.get(r.value as usize).copied().unwrap_or(NO_VALUE),
                ..*r
            };
            *at += 1;
        }
        for w in starts.windows(2) {
            let user_rows = &mut grouped[w[0]..w[1]];
            user_rows.sort_unstable_by_key(|r| (r.time, r.offset));
            one.clear();
            one.extend(user_rows.iter().map(|r| StepEvent {
                time: r.time,
                offset: r.offset,
                steps: r.steps,
            }));
            overall.add(&journeys::funnel_user(&one, steps, window_ns));
            if !breakdown {
                continue;
            }
            entry_values.clear();
            entry_values.extend(
                user_rows
                    .iter()
                    .filter(|r| r.steps & 1 != 0)
                    .map(|r| r.value),
            );
            entry_values.sort_unstable();
            entry_values.dedup();
            for &v in &entry_values {
                // Only entries with this value start chains of its group.
                one.clear();
                one.extend(user_rows.iter().map(|r| StepEvent {
                    time: r.time,
                    offset: r.offset,
                    steps: if r.value == v { r.steps } else { r.steps & !1 },
                }));
                groups
                    .entry(v)
                    .or_insert_with(|| FunnelTally::new(steps))
                    .add(&journeys::funnel_user(&one, steps, window_ns));
            }
        }
    }
    (overall, groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::collections::BTreeMap;

    type Input = (String, StepEvent, Option<String>);

    fn batch(rows: &[Input]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("t", DataType::Int64, false),
            Field::new("offset", DataType::UInt64, false),
            Field::new("mask", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.time))),
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.1.offset),
                )),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|r| i64::from(r.1.steps)),
                )),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2.as_deref()))),
            ],
        )
        .unwrap()
    }

    /// Per-step users and sorted durations (tallies of the same users in any order are equal).
    fn normal(mut t: FunnelTally) -> (Vec<u64>, Vec<Vec<i64>>) {
        t.durations.iter_mut().for_each(|d| d.sort_unstable());
        (t.users, t.durations)
    }

    /// Each user's events from a map by id, sorted, walked; per entry value, only entries of
    /// that value start chains.
    fn naive(rows: &[Input], steps: usize, window: i64) -> Tallies {
        let mut by_user: BTreeMap<&str, Vec<(StepEvent, Option<String>)>> = BTreeMap::new();
        for (u, e, v) in rows {
            by_user.entry(u).or_default().push((*e, v.clone()));
        }
        let mut overall = FunnelTally::new(steps);
        let mut groups: HashMap<Option<String>, FunnelTally> = HashMap::new();
        for evs in by_user.values_mut() {
            evs.sort_by_key(|(e, _)| (e.time, e.offset));
            let plain: Vec<StepEvent> = evs.iter().map(|(e, _)| *e).collect();
            overall.add(&journeys::funnel_user(&plain, steps, window));
            let mut values: Vec<Option<String>> = evs
                .iter()
                .filter(|(e, _)| e.steps & 1 != 0)
                .map(|(_, v)| v.clone())
                .collect();
            values.sort();
            values.dedup();
            for v in values {
                let only: Vec<StepEvent> = evs
                    .iter()
                    .map(|(e, bv)| StepEvent {
                        steps: if *bv == v { e.steps } else { e.steps & !1 },
                        ..*e
                    })
                    .collect();
                groups
                    .entry(v)
                    .or_insert_with(|| FunnelTally::new(steps))
                    .add(&journeys::funnel_user(&only, steps, window));
            }
        }
        (overall, groups)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn partitions_and_tasks_give_the_answer_of_one_map_of_users() {
        // A fixed pseudo-random stream: 500 users, 7000 events over 13 batches of uneven
        // sizes, clashing times (offsets decide), and breakdown values first met in different
        // orders by different batches (so each task numbers them differently).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let values = [None, Some("a"), Some("b"), Some("c"), Some("d")];
        let mut rows: Vec<Input> = Vec::new();
        for offset in 0..7000u64 {
            let value = values[next(values.len() as u64) as usize];
            rows.push((
                format!("user-{}", next(500)),
                StepEvent {
                    time: next(400) as i64 * 1000,
                    offset,
                    steps: next(16) as u32,
                },
                value.map(String::from),
            ));
        }
        let mut batches = Vec::new();
        let mut at = 0;
        for k in 0..13 {
            let len = if k == 12 {
                rows.len() - at
            } else {
                100 + k * 60
            };
            batches.push(batch(&rows[at..at + len]));
            at += len;
        }
        let (steps, window) = (4, 30_000);
        let (want_all, want_groups) = naive(&rows, steps, window);
        let want_all = normal(want_all);
        assert!(want_all.0[3] > 0, "some users reach the last step");
        for tasks in [1, 2, 3, 5] {
            let (all, groups) = tally(batches.clone(), tasks, steps, window, true)
                .await
                .unwrap();
            assert_eq!(normal(all), want_all, "{tasks} tasks");
            assert_eq!(groups.len(), want_groups.len(), "{tasks} tasks");
            for (v, t) in &want_groups {
                let got = groups.get(v).cloned().map(normal);
                assert_eq!(got, Some(normal(t.clone())), "{tasks} tasks, value {v:?}");
            }
            let (plain, none) = tally(batches.clone(), tasks, steps, window, false)
                .await
                .unwrap();
            assert_eq!(normal(plain), want_all);
            assert!(none.is_empty());
        }
    }
}
