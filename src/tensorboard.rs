//! TensorBoard event files: every numeric field of each step's [`StepMetrics`] as a
//! scalar, so `tensorboard --logdir runs/` shows a run beside the PNG plots.
//!
//! The format is TensorFlow's: a file named `events.out.tfevents.*` holding TFRecords
//! (length, masked CRC-32C of the length, an `Event` protobuf, masked CRC-32C of it). The
//! first record carries the file version, every later one a `Summary` of scalar values
//! at one step. The two messages are declared here with `prost`'s derive (wire-identical
//! to the fields of TensorFlow's `event.proto` and `summary.proto` they use), so there is
//! no code generation and no TensorFlow dependency.

use crate::metrics::StepMetrics;
use prost::Message;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// `tensorflow.Event`, the fields a scalar log uses.
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    wall_time: f64,
    /// The training step the values belong to.
    #[prost(int64, tag = "2")]
    step: i64,
    /// A file version (first record) or a summary.
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

/// The `what` of an [`Event`].
#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    /// `brain.Event:2`, the first record of every file.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Values at one step.
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a `simple_value` (a scalar).
#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(float, optional, tag = "2")]
    simple_value: Option<f32>,
}

/// TFRecord's CRC: CRC-32C, rotated right by 15 bits plus a constant.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes one run's event file; each [`TensorBoardWriter::write_step`] is flushed, so a
/// killed run keeps every step it logged. A resumed run opens a new file beside the old
/// one: TensorBoard reads every file of a folder as one run.
pub struct TensorBoardWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl TensorBoardWriter {
    /// Creates `dir/events.out.tfevents.<unix seconds>.<pid>.cove` with its version record.
    pub fn create(dir: &Path) -> std::io::Result<TensorBoardWriter> {
        std::fs::create_dir_all(dir)?;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let path = dir.join(format!(
            "events.out.tfevents.{secs}.{}.cove",
            std::process::id()
        ));
        let mut writer = TensorBoardWriter {
            out: BufWriter::new(File::create(&path)?),
            path,
        };
        writer.record(&Event {
            wall_time: now(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        writer.out.flush()?;
        Ok(writer)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `values` (tag, value) as scalars at `step`, and flushes.
    pub fn write_scalars(&mut self, step: u64, values: &[(String, f64)]) -> std::io::Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| SummaryValue {
                tag: tag.clone(),
                simple_value: Some(*v as f32),
            })
            .collect();
        self.record(&Event {
            wall_time: now(),
            step: step as i64,
            what: Some(What::Summary(Summary { value })),
        })?;
        self.out.flush()
    }

    /// Writes every numeric field of `metrics` at its step (see [`scalars`]).
    pub fn write_step(&mut self, metrics: &StepMetrics) -> std::io::Result<()> {
        self.write_scalars(metrics.step, &scalars(metrics))
    }

    /// One TFRecord holding `event`.
    fn record(&mut self, event: &Event) -> std::io::Result<()> {
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc(&len).to_le_bytes())?;
        self.out.write_all(&data)?;
        self.out.write_all(&masked_crc(&data).to_le_bytes())
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The numeric fields of `metrics` as TensorBoard tags, named by their path in
/// `metrics.jsonl` with `/` between levels (`reward_mean`, `cov/mean`, `seconds/rollout`,
/// `eval/pass@1`); `step`, absent options and non-numbers are left out.
pub fn scalars(metrics: &StepMetrics) -> Vec<(String, f64)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, f64)>) {
        match value {
            serde_json::Value::Number(n) => {
                if let Some(v) = n.as_f64() {
                    out.push((prefix.to_string(), v));
                }
            }
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    let tag = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}/{key}")
                    };
                    walk(&tag, v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(serde_json::Value::Object(mut map)) = serde_json::to_value(metrics) {
        map.remove("step");
        walk("", &serde_json::Value::Object(map), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C's check values (RFC 3720: "123456789" and 32 zero bytes), then the mask as
    /// TensorFlow's `crc32c::Mask` writes it.
    #[test]
    fn masked_crc_is_tfrecords() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8A91_36AA);
        // TensorFlow's `((crc >> 15) | (crc << 17)) + 0xa282ead8` of 0x8A9136AA, by hand.
        assert_eq!(masked_crc(&[0u8; 32]), 0x0FD7_FFFA);
    }

    #[test]
    fn scalars_flatten_nested_metrics() {
        let m = StepMetrics {
            step: 3,
            reward_mean: 0.5,
            ..Default::default()
        };
        let s = scalars(&m);
        assert!(s.iter().any(|(t, v)| t == "reward_mean" && *v == 0.5));
        assert!(s.iter().any(|(t, _)| t == "cov/mean"));
        assert!(s.iter().any(|(t, _)| t == "seconds/rollout"));
        assert!(!s.iter().any(|(t, _)| t == "step" || t == "eval/pass@1"));
    }
}
