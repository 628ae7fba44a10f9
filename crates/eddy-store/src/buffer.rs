//! The per-tenant Arrow buffers: rows the writer applied that are not in a Parquet file yet
//! (queries see them at once). Plain data; must not touch files, the manifest or the log.

use arrow::array::RecordBatch;

#[derive(Debug, Default, Clone)]
pub(crate) struct Buffer {
    pub(crate) events: Vec<RecordBatch>,
    pub(crate) samples: Vec<RecordBatch>,
    pub(crate) bytes: usize,
}

impl Buffer {
    pub(crate) fn add(&mut self, events: RecordBatch, samples: RecordBatch) {
        self.bytes += rows_bytes(&events) + rows_bytes(&samples);
        if events.num_rows() > 0 {
            self.events.push(events);
        }
        if samples.num_rows() > 0 {
            self.samples.push(samples);
        }
    }
}

/// The bytes a batch's rows take, not those of the buffers it points into: every column of a
/// decoded batch record is a slice of the one buffer its IPC message was read into, and
/// `get_array_memory_size` counted that whole buffer once per column (and child), ~10× the
/// data: buffers "reached" `persist_bytes` after ~45 requests of 1000 readings, the store
/// wrote a ~100 KB file every 0.2 s, and compaction spent a quarter of the CPU merging them.
pub(crate) fn rows_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};

    /// A batch slicing a bigger one counts its own rows' bytes, not the shared buffers'.
    #[test]
    fn a_slice_counts_its_rows_not_the_buffers_it_points_into() {
        let names: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..10_000).map(|i| format!("device-{i:05}")),
        ));
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10_000));
        let whole = RecordBatch::try_from_iter([("d", names), ("v", values)]).unwrap();
        let part = whole.slice(0, 100);
        let (w, p) = (super::rows_bytes(&whole), super::rows_bytes(&part));
        assert!(w >= 10_000 * (12 + 8), "{w}");
        assert!(p * 50 < w, "a 1% slice counts {p} of {w} bytes");
        assert!(part.get_array_memory_size() >= w, "what it used to count");
    }
}
