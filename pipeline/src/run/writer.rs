//! The writer actor: its own thread owning the run's row sink and its [`DatasetWriter`] (none
//! when the run has no folder), fed rows in task order by the ordering stage, and a ticker that
//! closes open parts every `flush_secs`.

use std::thread::JoinHandle;
use std::time::Duration;

use agentgen_datasets::{DatasetWriter, SampleRow, WriteSummary, WriterOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::manifest::Journal;
use super::{RowSink, RunConfig, ds};
use crate::{Error, Result};

/// What the ordering stage sends the writer actor.
pub(super) enum ToWriter {
    Row(Box<SampleRow>),
    /// `flush_secs` passed: close the open parts if they hold rows.
    Flush,
}

/// The Parquet writer over the run's folder, keeping the journal's manifest.
pub(super) fn dataset_writer(
    cfg: &RunConfig,
    journal: &Journal,
    run_id: &str,
) -> Result<DatasetWriter> {
    let dir = &journal.folder.dir;
    let writer_opts = WriterOptions {
        shard_index: cfg.shard.index,
        shard_count: cfg.shard.count,
        rows_per_file: cfg.rows_per_file.max(1),
        row_group_rows: cfg.row_group_rows.max(1),
        metadata: vec![("agentgen.run_id".into(), run_id.to_owned())],
        ..WriterOptions::default()
    };
    Ok(DatasetWriter::try_new(dir, writer_opts)
        .map_err(ds)?
        .with_journal(dir, journal.base.clone())
        .with_publisher(cfg.publisher.clone()))
}

/// Start the writer thread: each row goes to `sink`, then to `dataset` (none: the run has no
/// folder); `stop` is cancelled when a write fails. Returns the channel that feeds it and the
/// thread to join.
pub(super) fn spawn_writer(
    mut dataset: Option<DatasetWriter>,
    mut sink: Option<RowSink>,
    stop: &CancellationToken,
) -> Result<(mpsc::Sender<ToWriter>, JoinHandle<Result<WriteSummary>>)> {
    let (row_tx, mut row_rx) = mpsc::channel::<ToWriter>(512);
    let writer_stop = stop.clone();
    let writer_thread = std::thread::Builder::new()
        .name("agentgen-writer".into())
        .spawn(move || -> Result<WriteSummary> {
            while let Some(msg) = row_rx.blocking_recv() {
                let result = match (msg, dataset.as_mut()) {
                    (ToWriter::Row(row), writer) => {
                        if let Some(s) = sink.as_mut() {
                            s(&row);
                        }
                        writer.map_or(Ok(()), |w| w.write(*row))
                    }
                    (ToWriter::Flush, Some(w)) if w.has_unfinished_rows() => w.close_parts(),
                    (ToWriter::Flush, _) => Ok(()),
                };
                if let Err(e) = result {
                    // Stop at once: no more rollouts, no more writes; finished parts stay.
                    writer_stop.cancel();
                    drop(row_rx);
                    return Err(Error::WriteFailed { message: e.to_string() });
                }
            }
            // Always close the files after an interrupt or at the end.
            dataset.map_or(Ok(WriteSummary::default()), |w| {
                w.finish().map_err(|e| Error::WriteFailed { message: e.to_string() })
            })
        })
        .map_err(|e| Error::Io { path: "writer thread".into(), source: e })?;
    Ok((row_tx, writer_thread))
}

/// Close parts that have held rows for `flush_secs` (none when it is 0).
pub(super) fn spawn_flush_ticker(
    flush_secs: u64,
    row_tx: &mpsc::Sender<ToWriter>,
) -> Option<tokio::task::JoinHandle<()>> {
    (flush_secs > 0).then(|| {
        let tx = row_tx.clone();
        let period = Duration::from_secs(flush_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if tx.send(ToWriter::Flush).await.is_err() {
                    break;
                }
            }
        })
    })
}

/// Stop the flush ticker.
pub(super) async fn stop_ticker(ticker: Option<tokio::task::JoinHandle<()>>) {
    if let Some(t) = ticker {
        t.abort();
        let _ = t.await;
    }
}

/// Wait for the writer thread to close its files.
pub(super) async fn join_writer(
    writer_thread: JoinHandle<Result<WriteSummary>>,
) -> Result<WriteSummary> {
    // Joined off the runtime's workers: the writer may still be publishing its last parts
    // through this runtime (an object store), which needs a free worker to make progress.
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .map_err(|e| Error::Join { message: format!("joining the writer: {e}") })?
        .map_err(|_| Error::Join { message: "writer thread panicked".into() })?
}
