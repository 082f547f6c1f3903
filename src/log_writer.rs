//! Where log lines go: stderr, written in batches by a thread of its own.
//!
//! Each thread appends its formatted lines to a buffer of its own; the writer thread swaps the
//! buffers out every 50 ms (at once for a warning or an error) and writes them with one
//! `write(2)` each. So the access line a worker writes per request costs a copy into memory it
//! already holds: no system call, no wake-up of another thread, no lock that two workers share
//! (a channel to a writer thread, as tracing-appender has, costs a futex wake-up and a few
//! `sched_yield`s per line under load: `benches/load.sh --perf`, BENCHMARKS.md). A slow stderr
//! (journald under load) never stalls a worker: a thread whose unwritten lines pass 4 MiB drops
//! further lines until the writer catches up, and the writer says how many it dropped.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Unwritten bytes one thread may hold before its lines are dropped.
const THREAD_BUFFER_LIMIT: usize = 4 << 20;
/// Capacity a drained buffer keeps at most (what 50 ms of access lines take under load).
const SHRINK_ABOVE: usize = 256 << 10;
/// How long an INFO line may wait to be written.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// One thread's unwritten lines.
#[derive(Default)]
struct ThreadBuffer {
    lines: Mutex<Vec<u8>>,
}

#[derive(Default)]
struct Shared {
    /// Every thread's buffer, registered at its first line (the only time this lock is taken
    /// from a thread that logs).
    buffers: Mutex<Vec<Arc<ThreadBuffer>>>,
    dropped: AtomicU64,
    /// Set (and the condvar notified) when a warning or an error waits to be written.
    urgent: Mutex<bool>,
    wake: Condvar,
    /// Held while writing, so that `flush` and the writer thread never interleave lines.
    writing: Mutex<()>,
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

thread_local! {
    static MINE: Arc<ThreadBuffer> = register();
}

fn shared() -> &'static Arc<Shared> {
    SHARED.get_or_init(|| {
        let shared = Arc::new(Shared::default());
        let writer = shared.clone();
        // Without the thread, lines would only be written by `flush`: still correct.
        let _ = std::thread::Builder::new()
            .name("log writer".into())
            .spawn(move || writer.run());
        shared
    })
}

fn register() -> Arc<ThreadBuffer> {
    let buffer = Arc::new(ThreadBuffer::default());
    shared()
        .buffers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(buffer.clone());
    buffer
}

impl Shared {
    fn run(&self) {
        let mut spare = Vec::new();
        loop {
            {
                let urgent = self.urgent.lock().unwrap_or_else(PoisonError::into_inner);
                let (mut urgent, _) = self
                    .wake
                    .wait_timeout_while(urgent, FLUSH_EVERY, |u| !*u)
                    .unwrap_or_else(PoisonError::into_inner);
                *urgent = false;
            }
            self.write_out(&mut spare);
        }
    }

    /// Writes every thread's lines, each thread's in the order it logged them.
    fn write_out(&self, spare: &mut Vec<u8>) {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let buffers: Vec<Arc<ThreadBuffer>> = {
            let mut all = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
            let snapshot = all.clone();
            // Held by the registry and the snapshot only: its thread has ended. This write is
            // its last.
            all.retain(|b| Arc::strong_count(b) > 2);
            snapshot
        };
        let mut err = std::io::stderr().lock();
        for buffer in &buffers {
            spare.clear();
            // A stall may have grown a buffer to megabytes; do not keep that for ever.
            spare.shrink_to(SHRINK_ABOVE);
            std::mem::swap(
                &mut *buffer.lines.lock().unwrap_or_else(PoisonError::into_inner),
                spare,
            );
            if !spare.is_empty() {
                // Nowhere to report a failing stderr; the lines are lost either way.
                let _ = err.write_all(spare);
            }
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                err,
                "oidc-gateway: {dropped} log lines dropped: stderr did not keep up"
            );
        }
        let _ = err.flush();
    }
}

/// Writes whatever lines are waiting, now (before the process exits).
pub fn flush() {
    if let Some(shared) = SHARED.get() {
        shared.write_out(&mut Vec::new());
    }
}

/// Writes the calling thread's waiting lines, now, and no other thread's: for an exit that
/// must not wait for (or print) what the rest of the process is still logging.
pub fn flush_current_thread() {
    let Ok(lines) = MINE.try_with(|mine| {
        std::mem::take(&mut *mine.lines.lock().unwrap_or_else(PoisonError::into_inner))
    }) else {
        return;
    };
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(&lines);
    let _ = err.flush();
}

/// The `MakeWriter` of the log layer.
#[derive(Clone, Copy, Default)]
pub struct BatchedStderr;

/// Appends one formatted event to the calling thread's buffer.
pub struct LineWriter {
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = shared();
        let kept = MINE.try_with(|mine| {
            let mut lines = mine.lines.lock().unwrap_or_else(PoisonError::into_inner);
            if lines.len() + line.len() > THREAD_BUFFER_LIMIT {
                return false;
            }
            lines.extend_from_slice(line);
            true
        });
        match kept {
            Ok(true) => {}
            // Over the limit, or a thread that is ending (its buffer is gone): dropped.
            Ok(false) | Err(_) => {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.urgent {
            *shared.urgent.lock().unwrap_or_else(PoisonError::into_inner) = true;
            shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}
