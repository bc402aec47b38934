//! The run's per-epoch metrics, in a file of its own: `metrics.jsonl`, one JSON line per
//! epoch and split with each metric's mean, maximum and count over the epoch's batches.
//!
//! Burn's `FileMetricLogger` writes one file per metric and epoch from a background thread
//! that panics when a write fails (`"Can log an item."`), which aborts the whole process,
//! and its layout is Burn's internal business. [`MetricLog`] keeps the current epoch's sums
//! in memory and, at the end of each epoch and split, rewrites `metrics.jsonl` atomically
//! (a temporary file, then a rename), so the file never holds a torn line and a failed
//! write (a full disk) leaves the previous epochs intact: the failure is recorded in a
//! [`WriteFailure`] slot, the run is asked to stop, and `train` turns the record into
//! [`crate::TrainError::WriteFailed`]. The checkpointer records its failures in the same
//! slot. [`read_records`] is the one reader (results, early stopping, the report).
//!
//! A run written before this file existed (Burn's `<split>/epoch-<n>/<Metric_Name>.log`
//! layout) is read through [`legacy`] and converted to `metrics.jsonl` when it resumes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::train::Interrupter;
use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use serde::{Deserialize, Serialize};

use crate::harness::output::nan_max;
use crate::run::checkpoint::write_atomic;

/// The metrics file of a run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// The first write of a run that failed (the file and the operating system's message), and
/// the run's interrupter, through which a failure stops the run.
#[derive(Clone)]
pub struct WriteFailure {
    first: Arc<Mutex<Option<(PathBuf, String)>>>,
    interrupter: Interrupter,
}

impl std::fmt::Debug for WriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WriteFailure").field(&self.get()).finish()
    }
}

impl WriteFailure {
    /// No failure yet; one will stop the run through `interrupter`.
    pub fn new(interrupter: Interrupter) -> Self {
        Self {
            first: Arc::default(),
            interrupter,
        }
    }

    /// Records a failed write (only the first one is kept: later ones follow from it) and asks
    /// the run to stop.
    pub fn record(&self, path: &Path, error: &std::io::Error) {
        if let Ok(mut slot) = self.first.lock()
            && slot.is_none()
        {
            *slot = Some((path.to_path_buf(), error.to_string()));
        }
        self.interrupter
            .stop(Some(&format!("could not write {}", path.display())));
    }

    /// The recorded failure, if any.
    pub fn get(&self) -> Option<(PathBuf, String)> {
        self.first.lock().ok().and_then(|slot| slot.clone())
    }
}

/// One metric over one epoch's batches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Mean over the epoch's items (each batch weighted by its item count), or the value
    /// Burn marks as the epoch's final one.
    #[serde(with = "nonfinite")]
    pub mean: f64,
    /// The largest value of any batch; NaN when any batch was NaN.
    #[serde(with = "nonfinite")]
    pub max: f64,
    /// Items (or batches, for metrics without a count) the mean is over.
    pub count: usize,
}

/// One line of `metrics.jsonl`: every metric of one split of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch, from 1.
    pub epoch: usize,
    /// `train` or `valid` (or `test`).
    pub split: String,
    /// Each metric by the name Burn's metric gives it.
    pub metrics: BTreeMap<String, Summary>,
}

/// JSON has no NaN or infinity; they are written as the strings `"NaN"`, `"inf"`, `"-inf"`
/// so that a diverged epoch still shows as such.
mod nonfinite {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        match *v {
            v if v.is_finite() => s.serialize_f64(v),
            v if v.is_nan() => s.serialize_str("NaN"),
            v if v > 0.0 => s.serialize_str("inf"),
            _ => s.serialize_str("-inf"),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Number(v) => Ok(v),
            Repr::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!("not a number: {other}"))),
            },
        }
    }
}

/// The records of the run in `dir`, in file order: `metrics.jsonl`, or for a run written
/// before it existed, its legacy logs. A line that does not parse (a hand-edited file) is
/// skipped rather than failing every reader of the run.
pub fn read_records(dir: &Path) -> Vec<EpochRecord> {
    match std::fs::read_to_string(dir.join(METRICS_FILE)) {
        Ok(text) => text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect(),
        Err(_) => legacy::read(dir),
    }
}

/// The summary of `metric` in `split` for each of epochs 1..=epochs (the last record of an
/// epoch counts, should one appear twice).
pub fn epoch_summaries(
    records: &[EpochRecord],
    split: &str,
    metric: &str,
    epochs: usize,
) -> Vec<Option<Summary>> {
    let mut out = vec![None; epochs];
    for r in records.iter().filter(|r| r.split == split) {
        if let Some(slot) = r.epoch.checked_sub(1).and_then(|i| out.get_mut(i)) {
            *slot = r.metrics.get(metric).copied();
        }
    }
    out
}

/// Sums of one metric over the batches seen so far in an epoch.
#[derive(Debug, Clone, Copy)]
struct Accumulator {
    sum: f64,
    count: usize,
    max: f64,
    last: Option<f64>,
}

impl Accumulator {
    fn new() -> Self {
        Accumulator {
            sum: 0.0,
            count: 0,
            max: f64::NEG_INFINITY,
            last: None,
        }
    }

    fn add(&mut self, entry: &NumericEntry) {
        match *entry {
            NumericEntry::Value(v) => {
                self.sum += v;
                self.count += 1;
                self.max = nan_max(self.max, v);
            }
            NumericEntry::Aggregated {
                aggregated_value,
                count,
            } => {
                self.sum += aggregated_value * count as f64;
                self.count += count;
                self.max = nan_max(self.max, aggregated_value);
            }
            NumericEntry::Final(v) => self.last = Some(v),
        }
    }

    fn summary(&self) -> Summary {
        let mean = match self.last {
            Some(v) => v,
            None if self.count > 0 => self.sum / self.count as f64,
            None => f64::NAN,
        };
        Summary {
            mean,
            max: self.max,
            count: self.count,
        }
    }
}

/// The split's name in `metrics.jsonl`.
fn split_name(split: &Split) -> String {
    match split {
        Split::Test(Some(tag)) => format!("test/{}", tag.trim().replace(' ', "-").to_lowercase()),
        other => other.to_string(),
    }
}

/// A [`MetricLogger`] that writes `metrics.jsonl` (see the module documentation).
pub struct MetricLog {
    path: PathBuf,
    definitions: HashMap<MetricId, MetricDefinition>,
    /// Finished epochs and splits, in the order they finished.
    records: Vec<EpochRecord>,
    /// The current epoch's sums, by split and metric name.
    current: HashMap<(String, String), Accumulator>,
    epoch: usize,
    failure: WriteFailure,
}

impl MetricLog {
    /// The log of the run in `directory`, keeping the records of epochs up to
    /// `keep_through` (the epoch a resumed run continues after; 0 for a new run) and
    /// dropping later ones, which the run is about to train again. A run in the legacy
    /// layout is converted here. A failed write is recorded in `failure`, which stops the
    /// run.
    pub fn open(directory: &Path, keep_through: usize, failure: WriteFailure) -> Self {
        let path = directory.join(METRICS_FILE);
        let legacy = !path.exists() && legacy::exists(directory);
        let mut records = read_records(directory);
        let before = records.len();
        records.retain(|r| r.epoch <= keep_through);
        let log = MetricLog {
            path,
            definitions: HashMap::new(),
            records,
            current: HashMap::new(),
            epoch: 0,
            failure,
        };
        if legacy || log.records.len() != before {
            log.write();
            if legacy && log.failure.get().is_none() {
                legacy::remove(directory);
            }
        }
        log
    }

    /// Rewrites the file with every record.
    fn write(&self) {
        let mut text = String::new();
        for r in &self.records {
            // A record of numbers and strings always serialises.
            if let Ok(line) = serde_json::to_string(r) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        if let Err(e) = write_atomic(&self.path, text.as_bytes()) {
            self.failure.record(&self.path, &e);
        }
    }

    fn name_of(&self, id: &MetricId) -> Option<&str> {
        self.definitions.get(id).map(|d| d.name.as_str())
    }
}

impl MetricLogger for MetricLog {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        if self.epoch != epoch {
            self.current.clear();
            self.epoch = epoch;
        }
        let split = split_name(split);
        for numeric in &update.entries_numeric {
            let (Some(entry), Some(name)) = (
                numeric.numeric_entry.as_ref(),
                self.name_of(&numeric.entry.metric_id),
            ) else {
                continue;
            };
            let key = (split.clone(), name.to_string());
            self.current
                .entry(key)
                .or_insert_with(Accumulator::new)
                .add(entry);
        }
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        let split = split_name(split);
        // The current epoch before its summary is written, then the finished records.
        if epoch == self.epoch
            && let Some(acc) = self.current.get(&(split.clone(), name.to_string()))
        {
            return Ok(vec![NumericEntry::Final(acc.summary().mean)]);
        }
        let found = self
            .records
            .iter()
            .rev()
            .find(|r| r.epoch == epoch && r.split == split)
            .and_then(|r| r.metrics.get(name));
        Ok(found
            .map(|s| NumericEntry::Final(s.mean))
            .into_iter()
            .collect())
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.definitions
            .insert(definition.metric_id.clone(), definition);
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        let split = split_name(&summary.split);
        let metrics: BTreeMap<String, Summary> = self
            .current
            .iter()
            .filter(|((s, _), _)| *s == split)
            .map(|((_, name), acc)| (name.clone(), acc.summary()))
            .collect();
        self.current.retain(|(s, _), _| *s != split);
        self.records
            .retain(|r| !(r.epoch == summary.epoch_number && r.split == split));
        self.records.push(EpochRecord {
            epoch: summary.epoch_number,
            split,
            metrics,
        });
        if self.failure.get().is_none() {
            self.write();
        }
    }
}

/// Runs written before `metrics.jsonl`: Burn's layout, one file per metric, split and
/// epoch, `<dir>/<split>/epoch-<n>/<Metric_Name>.log`, one `value[,count]` line per batch.
pub mod legacy {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::{EpochRecord, Summary};
    use crate::harness::output::nan_max;

    /// The split folders of the layout.
    const SPLITS: [&str; 2] = ["train", "valid"];

    /// Whether `dir` holds logs in the legacy layout.
    pub fn exists(dir: &Path) -> bool {
        SPLITS.iter().any(|s| dir.join(s).join("epoch-1").is_dir())
    }

    /// The records of every complete epoch folder, epoch by epoch, train before valid.
    pub fn read(dir: &Path) -> Vec<EpochRecord> {
        let mut out = Vec::new();
        for epoch in 1.. {
            let mut any = false;
            for split in SPLITS {
                let folder = dir.join(split).join(format!("epoch-{epoch}"));
                let Ok(entries) = std::fs::read_dir(&folder) else {
                    continue;
                };
                any = true;
                let mut metrics = BTreeMap::new();
                for entry in entries.flatten() {
                    let path = entry.path();
                    let (Some(stem), Ok(text)) = (
                        path.file_stem().and_then(|s| s.to_str()),
                        std::fs::read_to_string(&path),
                    ) else {
                        continue;
                    };
                    if let Some(summary) = summarise(&text) {
                        metrics.insert(stem.replace('_', " "), summary);
                    }
                }
                out.push(EpochRecord {
                    epoch,
                    split: split.to_string(),
                    metrics,
                });
            }
            if !any {
                break;
            }
        }
        out
    }

    /// Mean (weighted by the counts), max and count of `value[,count]` lines; `None` for a
    /// log of non-numeric entries.
    fn summarise(text: &str) -> Option<Summary> {
        let (mut sum, mut count, mut max) = (0.0, 0usize, f64::NEG_INFINITY);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.split(',');
            let value: f64 = parts.next()?.trim().parse().ok()?;
            let n: usize = parts
                .next()
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(1);
            sum += value * n as f64;
            count += n;
            max = nan_max(max, value);
        }
        (count > 0).then(|| Summary {
            mean: sum / count as f64,
            max,
            count,
        })
    }

    /// Removes the legacy folders (once their records are in `metrics.jsonl`).
    pub fn remove(dir: &Path) {
        for split in SPLITS {
            // Best effort: a folder left behind is ignored once metrics.jsonl exists.
            let _ = std::fs::remove_dir_all(dir.join(split));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, split: &str, accuracy: f64, grad_max: f64) -> EpochRecord {
        let summary = |mean, max| Summary {
            mean,
            max,
            count: 10,
        };
        EpochRecord {
            epoch,
            split: split.into(),
            metrics: BTreeMap::from([
                ("Accuracy".to_string(), summary(accuracy, accuracy)),
                ("Grad norm".to_string(), summary(1.0, grad_max)),
            ]),
        }
    }

    #[test]
    fn records_round_trip_with_non_finite_values() {
        let r = record(3, "train", 0.5, f64::NAN);
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.contains("\"NaN\""), "{line}");
        let back: EpochRecord = serde_json::from_str(&line).unwrap();
        assert!(back.metrics["Grad norm"].max.is_nan());
        assert_eq!(back.metrics["Accuracy"], r.metrics["Accuracy"]);
        let inf = record(1, "train", f64::INFINITY, f64::NEG_INFINITY);
        let back: EpochRecord =
            serde_json::from_str(&serde_json::to_string(&inf).unwrap()).unwrap();
        assert_eq!(back.metrics["Accuracy"].mean, f64::INFINITY);
        assert_eq!(back.metrics["Grad norm"].max, f64::NEG_INFINITY);
        assert!(serde_json::from_str::<Summary>(r#"{"mean":"many","max":1,"count":1}"#).is_err());
    }

    #[test]
    fn the_last_record_of_an_epoch_counts_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = [record(1, "valid", 0.5, 1.0), record(2, "valid", 0.6, 2.0)]
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .chain(["{not json".to_string()])
            .chain([serde_json::to_string(&record(2, "valid", 0.7, 3.0)).unwrap()])
            .collect();
        std::fs::write(dir.path().join(METRICS_FILE), lines.join("\n")).unwrap();
        let records = read_records(dir.path());
        assert_eq!(records.len(), 3);
        let acc = epoch_summaries(&records, "valid", "Accuracy", 3);
        assert_eq!(
            acc.iter().map(|s| s.map(|s| s.mean)).collect::<Vec<_>>(),
            [Some(0.5), Some(0.7), None]
        );
        assert!(
            epoch_summaries(&records, "train", "Accuracy", 2)
                .iter()
                .all(Option::is_none)
        );
    }

    #[test]
    fn opening_for_a_resume_drops_later_epochs_and_converts_legacy_logs() {
        let dir = tempfile::tempdir().unwrap();
        // Burn's old layout: two epochs of training logs and one of validation.
        for (split, epoch, metric, text) in [
            ("train", 1, "Loss", "2.0,10\n1.0,30\n"),
            ("train", 1, "Grad_norm", "epoch max 1 - batch 1\n"),
            ("train", 2, "Loss", "0.5,10\n"),
            ("valid", 1, "Accuracy", "50,10\n70,10\n"),
        ] {
            let folder = dir.path().join(split).join(format!("epoch-{epoch}"));
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join(format!("{metric}.log")), text).unwrap();
        }
        let failure = WriteFailure::new(Interrupter::new());
        let log = MetricLog::open(dir.path(), 1, failure.clone());
        assert!(failure.get().is_none());
        assert!(!dir.path().join("train").exists(), "legacy folders removed");
        assert_eq!(log.records.len(), 2, "epoch 2 is trained again: dropped");
        let records = read_records(dir.path());
        assert_eq!(records, log.records);
        let loss = epoch_summaries(&records, "train", "Loss", 1)[0].unwrap();
        assert_eq!((loss.mean, loss.max, loss.count), (1.25, 2.0, 40));
        let accuracy = epoch_summaries(&records, "valid", "Accuracy", 1)[0].unwrap();
        assert_eq!(accuracy.mean, 60.0);
        // Non-numeric logs carry no summary.
        assert!(!records[0].metrics.contains_key("Grad norm"));
        // A new run in the same folder keeps nothing.
        drop(MetricLog::open(dir.path(), 0, failure));
        assert!(read_records(dir.path()).is_empty());
    }

    #[test]
    fn accumulator_weights_by_count_keeps_nan_and_prefers_the_final_value() {
        let mut acc = Accumulator::new();
        acc.add(&NumericEntry::Aggregated {
            aggregated_value: 1.0,
            count: 3,
        });
        acc.add(&NumericEntry::Value(5.0));
        let s = acc.summary();
        assert_eq!((s.mean, s.max, s.count), (2.0, 5.0, 4));
        acc.add(&NumericEntry::Value(f64::NAN));
        assert!(acc.summary().max.is_nan());
        acc.add(&NumericEntry::Final(7.0));
        assert_eq!(acc.summary().mean, 7.0);
    }
}
