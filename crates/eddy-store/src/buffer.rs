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
        self.bytes += events.get_array_memory_size() + samples.get_array_memory_size();
        if events.num_rows() > 0 {
            self.events.push(events);
        }
        if samples.num_rows() > 0 {
            self.samples.push(samples);
        }
    }
}
