//! A borrowed view of one event ([`EventRef`]) for consumers that read events one at a time —
//! the stream processor — without building an owned [`Event`] (a dozen allocations: strings,
//! the metrics and properties maps) for every row of a batch record. A view borrows either an
//! owned event or one row of a batch's columns ([`EventColumns::rows`]); [`EventRef::to_event`]
//! builds the owned event where one is kept (the live feed).

use std::collections::BTreeMap;
use std::collections::btree_map;

use arrow::array::{Array, AsArray, StringArray};
use arrow::datatypes::Float64Type;

use crate::Event;
use crate::columns::EventColumns;

/// One event's fields, borrowed. Metrics come in name order and once each, like
/// [`Event::metrics`]; properties are not part of the view (only [`EventRef::to_event`] has
/// them).
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub tenant: &'a str,
    pub event_id: &'a str,
    pub time: i64,
    pub received_at: i64,
    pub r#type: &'a str,
    pub source: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub page_url: Option<&'a str>,
    pub metrics: MetricsRef<'a>,
    origin: Origin<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    Event(&'a Event),
    Row(&'a EventColumns, usize),
}

impl EventRef<'_> {
    /// The owned event (with its properties).
    pub fn to_event(&self) -> Event {
        match self.origin {
            Origin::Event(e) => e.clone(),
            Origin::Row(cols, i) => cols.event(i),
        }
    }
}

/// Anything an [`EventRef`] can be taken from: an owned event, or a view itself.
pub trait AsEventRef {
    fn as_event_ref(&self) -> EventRef<'_>;
}

impl AsEventRef for Event {
    fn as_event_ref(&self) -> EventRef<'_> {
        EventRef {
            tenant: &self.tenant,
            event_id: &self.event_id,
            time: self.time,
            received_at: self.received_at,
            r#type: &self.r#type,
            source: self.source.as_deref(),
            device_id: self.device_id.as_deref(),
            user_id: self.user_id.as_deref(),
            page_url: self.page_url.as_deref(),
            metrics: MetricsRef::Map(&self.metrics),
            origin: Origin::Event(self),
        }
    }
}

impl AsEventRef for EventRef<'_> {
    fn as_event_ref(&self) -> EventRef<'_> {
        *self
    }
}

/// An event's metrics, borrowed: name → value, in name order.
#[derive(Debug, Clone, Copy)]
pub enum MetricsRef<'a> {
    Map(&'a BTreeMap<String, f64>),
    /// Entries `start..end` of a batch's metrics map column.
    Columns {
        keys: &'a StringArray,
        values: &'a [f64],
        start: usize,
        end: usize,
    },
}

impl<'a> MetricsRef<'a> {
    pub fn len(&self) -> usize {
        match self {
            MetricsRef::Map(m) => m.len(),
            MetricsRef::Columns { start, end, .. } => end - start,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (name, value) in name order.
    pub fn iter(&self) -> MetricsIter<'a> {
        match *self {
            MetricsRef::Map(m) => MetricsIter::Map(m.iter()),
            MetricsRef::Columns {
                keys,
                values,
                start,
                end,
            } => MetricsIter::Columns {
                keys,
                values,
                next: start,
                end,
            },
        }
    }

    /// Metric names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.iter().map(|(k, _)| k)
    }
}

/// The iterator of [`MetricsRef::iter`].
#[derive(Debug)]
pub enum MetricsIter<'a> {
    Map(btree_map::Iter<'a, String, f64>),
    Columns {
        keys: &'a StringArray,
        values: &'a [f64],
        next: usize,
        end: usize,
    },
}

impl<'a> Iterator for MetricsIter<'a> {
    type Item = (&'a str, f64);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            MetricsIter::Map(it) => it.next().map(|(k, v)| (k.as_str(), *v)),
            MetricsIter::Columns {
                keys,
                values,
                next,
                end,
            } => {
                if *next >= *end {
                    return None;
                }
                let j = *next;
                *next += 1;
                Some((keys.value(j), values[j]))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match self {
            MetricsIter::Map(it) => it.len(),
            MetricsIter::Columns { next, end, .. } => end.saturating_sub(*next),
        };
        (n, Some(n))
    }
}

/// The rows of a batch as views (see [`EventColumns::rows`]).
#[derive(Debug)]
pub struct Rows<'a> {
    cols: &'a EventColumns,
    time: &'a [i64],
    received: &'a [i64],
    ids: &'a StringArray,
    types: &'a StringArray,
    sources: &'a StringArray,
    devices: &'a StringArray,
    users: &'a StringArray,
    pages: &'a StringArray,
    m_offsets: &'a [i32],
    m_keys: &'a StringArray,
    m_values: &'a [f64],
    next: usize,
}

impl EventColumns {
    /// The events as borrowed views, in order (for consumers that work event by event and
    /// keep nothing of most events: no allocation per row). Defined here, not in `columns`,
    /// so that `view` depends on `columns` and not the other way round.
    pub fn rows(&self) -> Rows<'_> {
        Rows::new(self)
    }
}

impl<'a> Rows<'a> {
    fn new(cols: &'a EventColumns) -> Self {
        let metrics = cols.batch.column(8).as_map();
        Self {
            cols,
            time: cols.times().values().as_ref(),
            received: cols.received().values().as_ref(),
            ids: cols.event_ids(),
            types: cols.batch.column(3).as_string(),
            sources: cols.batch.column(4).as_string(),
            devices: cols.batch.column(5).as_string(),
            users: cols.batch.column(6).as_string(),
            pages: cols.batch.column(7).as_string(),
            m_offsets: metrics.value_offsets(),
            m_keys: metrics.keys().as_string::<i32>(),
            m_values: metrics
                .values()
                .as_primitive::<Float64Type>()
                .values()
                .as_ref(),
            next: 0,
        }
    }
}

impl<'a> Iterator for Rows<'a> {
    type Item = EventRef<'a>;

    fn next(&mut self) -> Option<EventRef<'a>> {
        let i = self.next;
        if i >= self.time.len() {
            return None;
        }
        self.next += 1;
        let opt = |a: &'a StringArray| a.is_valid(i).then(|| a.value(i));
        Some(EventRef {
            tenant: &self.cols.tenant,
            event_id: self.ids.value(i),
            time: self.time[i],
            received_at: self.received[i],
            r#type: self.types.value(i),
            source: opt(self.sources),
            device_id: opt(self.devices),
            user_id: opt(self.users),
            page_url: opt(self.pages),
            metrics: MetricsRef::Columns {
                keys: self.m_keys,
                values: self.m_values,
                start: self.m_offsets[i] as usize,
                end: self.m_offsets[i + 1] as usize,
            },
            origin: Origin::Row(self.cols, i),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.time.len() - self.next;
        (n, Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PropertyValue;
    use crate::columns::ColumnsBuilder;

    fn sample(i: i64) -> Event {
        let mut e = Event {
            tenant: "acme".into(),
            event_id: format!("e{i}"),
            time: 1_764_000_000_000_000_000 + i,
            received_at: 1_764_000_000_500_000_000 + i,
            r#type: if i % 2 == 0 { "reading" } else { "click" }.into(),
            source: (i % 3 == 0).then(|| "web".into()),
            device_id: (i % 2 == 0).then(|| format!("d{i}")),
            user_id: (i % 2 == 1).then(|| format!("u{i}")),
            page_url: (i % 4 == 1).then(|| "/home".into()),
            client_id: i % 5 == 0,
            ..Default::default()
        };
        for k in 0..(i % 4) {
            e.metrics.insert(format!("m{k}"), k as f64 + 0.5);
        }
        e.properties.insert(
            "plan".into(),
            PropertyValue {
                value: Some(crate::Value::String("pro".into())),
            },
        );
        e
    }

    fn same(a: &EventRef<'_>, b: &EventRef<'_>) {
        assert_eq!(a.tenant, b.tenant);
        assert_eq!(a.event_id, b.event_id);
        assert_eq!((a.time, a.received_at), (b.time, b.received_at));
        assert_eq!(a.r#type, b.r#type);
        assert_eq!(
            (a.source, a.device_id, a.user_id, a.page_url),
            (b.source, b.device_id, b.user_id, b.page_url)
        );
        assert_eq!(
            a.metrics.iter().collect::<Vec<_>>(),
            b.metrics.iter().collect::<Vec<_>>()
        );
        assert_eq!(a.metrics.len(), b.metrics.len());
    }

    #[test]
    fn a_row_of_a_batch_reads_like_the_event_it_was_built_from() {
        let events: Vec<Event> = (0..9).map(sample).collect();
        let mut b = ColumnsBuilder::default();
        for e in &events {
            b.push(e).unwrap();
        }
        let cols = EventColumns {
            tenant: "acme".into(),
            batch: b.finish().unwrap(),
        };
        let rows: Vec<EventRef<'_>> = cols.rows().collect();
        assert_eq!(rows.len(), events.len());
        assert_eq!(cols.rows().size_hint(), (9, Some(9)));
        for (row, e) in rows.iter().zip(&events) {
            same(row, &e.as_event_ref());
            assert_eq!(&row.to_event(), e);
            assert_eq!(&e.as_event_ref().to_event(), e);
        }
        assert!(rows[0].metrics.is_empty());
        assert_eq!(
            rows[3].metrics.names().collect::<Vec<_>>(),
            ["m0", "m1", "m2"]
        );
    }
}
