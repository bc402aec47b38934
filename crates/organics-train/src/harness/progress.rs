//! Plain-text progress for logs and CI: a line every tenth of an epoch and at the end of
//! each split, instead of Burn's TUI (terminals) or its per-batch debug lines.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};

/// A renderer that prints a few plain lines per epoch.
pub struct PlainRenderer {
    epoch: usize,
    epochs: usize,
    split: String,
    total: usize,
    next_report: usize,
    started: Instant,
    metrics: BTreeMap<String, String>,
    names: HashMap<MetricId, String>,
}

impl PlainRenderer {
    /// A new renderer.
    pub fn new() -> Self {
        Self {
            epoch: 0,
            epochs: 0,
            split: String::new(),
            total: 0,
            next_report: 0,
            started: Instant::now(),
            metrics: BTreeMap::new(),
            names: HashMap::new(),
        }
    }

    fn line(&self, done: usize) {
        let metrics: Vec<&str> = self.metrics.values().map(String::as_str).collect();
        println!(
            "epoch {}/{} {} {done}/{} items ({:.0} s) | {}",
            self.epoch,
            self.epochs,
            self.split,
            self.total,
            self.started.elapsed().as_secs_f64(),
            metrics.join(" | ")
        );
    }

    fn record(&mut self, state: MetricState) {
        let entry = match state {
            MetricState::Generic(e) | MetricState::Numeric(e, _) => e,
        };
        let name = self
            .names
            .get(&entry.metric_id)
            .cloned()
            .unwrap_or_default();
        let text = format!("{name}: {}", entry.serialized_entry.formatted);
        self.metrics.insert(name, text);
    }
}

impl Default for PlainRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsRendererTraining for PlainRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.record(state);
    }
    fn update_valid(&mut self, state: MetricState) {
        self.record(state);
    }
}

impl MetricsRendererEvaluation for PlainRenderer {
    fn update_test(&mut self, _name: EvaluationName, state: MetricState) {
        self.record(state);
    }
}

impl TrainingProgressLogger for PlainRenderer {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        _items: Option<usize>,
        _label: Option<&str>,
    ) {
        self.epochs = total_epochs;
        // counted up at the start of each training split
        self.epoch = starting_epoch.saturating_sub(1);
        println!("training epochs {starting_epoch}..={total_epochs}");
    }
    fn update_epoch(&mut self, _epoch: usize) {}
    fn start_split(&mut self, split: &str, total_items: usize) {
        if split == "train" {
            self.epoch += 1;
        }
        self.split = split.to_string();
        self.total = total_items;
        self.next_report = total_items.div_ceil(10);
        self.metrics.clear();
    }
    fn update_split(&mut self, items_processed: usize) {
        if items_processed >= self.next_report && items_processed < self.total {
            self.line(items_processed);
            self.next_report = items_processed + self.total.div_ceil(10).max(1);
        }
    }
    fn end_split(&mut self) {
        self.line(self.total);
    }
    fn end(&mut self) {}
    // Burn reports every iteration as an event; the progress lines already say it.
    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for PlainRenderer {
    fn start_global_progress(&mut self, _total_tests: usize) {}
    fn start_test(&mut self, name: &str, total_items: usize) {
        self.start_split(name, total_items);
    }
    fn update_test_progress(&mut self, items_processed: usize) {
        self.update_split(items_processed);
    }
    fn end_test(&mut self) {
        self.end_split();
    }
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRenderer for PlainRenderer {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id, definition.name.to_string());
    }
}
