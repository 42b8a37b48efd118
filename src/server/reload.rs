//! Keeps the web configuration current without a restart: on use, at most once per check
//! interval, the stamps (size, mtime, inode) of the file and of every file it names are
//! compared with those seen at the last load; on a change the whole configuration is loaded
//! again and swapped in. A broken change keeps the previous configuration, with one error line
//! until one of the files changes again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::web_config::{Stamp, WebConfig};

/// The configuration in force and what is needed to notice that it changed.
#[derive(Debug)]
pub(crate) struct Reloader {
    path: Option<PathBuf>,
    every: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    current: Arc<WebConfig>,
    next_check: Instant,
    /// The files a failed load read, as they were: nothing to retry until one changes.
    failed: Option<Vec<(PathBuf, Option<Stamp>)>>,
}

fn unchanged(files: &[(PathBuf, Option<Stamp>)]) -> bool {
    files.iter().all(|(path, stamp)| Stamp::of(path) == *stamp)
}

impl Reloader {
    /// Watches `path` (none: `initial` forever), checking at most once per `every`.
    pub(crate) fn new(path: Option<PathBuf>, initial: WebConfig, every: Duration) -> Reloader {
        Reloader {
            path,
            every,
            state: Mutex::new(State {
                current: Arc::new(initial),
                next_check: Instant::now() + every,
                failed: None,
            }),
        }
    }

    /// The configuration to apply now, reloaded first if a file changed.
    pub(crate) fn current(&self) -> Arc<WebConfig> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(path) = &self.path else {
            return state.current.clone();
        };
        let now = Instant::now();
        if now < state.next_check {
            return state.current.clone();
        }
        state.next_check = now + self.every;
        if unchanged(&state.current.files) {
            return state.current.clone();
        }
        if state.failed.as_deref().is_some_and(unchanged) {
            return state.current.clone();
        }
        let mut attempted = Vec::new();
        let outcome = WebConfig::load_recording(path, &mut attempted).and_then(|new| {
            if new.tls_enabled() == state.current.tls_enabled() {
                Ok(new)
            } else {
                // Clients and Prometheus' scheme would have to change too: a restart is the
                // honest way to do that.
                Err("TLS cannot be switched on or off without a restart".to_string())
            }
        });
        match outcome {
            Ok(new) => {
                tracing::info!(file = %path.display(), "Web configuration reloaded");
                for warning in new.warnings() {
                    tracing::warn!(file = %path.display(), "{warning}");
                }
                state.current = Arc::new(new);
                state.failed = None;
            }
            Err(why) => {
                tracing::error!(file = %path.display(), error = %why, "Web configuration not reloaded; serving with the previous one");
                // Watch the old files as well: restoring them is also a fix.
                attempted.extend(
                    state
                        .current
                        .files
                        .iter()
                        .map(|(p, _)| (p.clone(), Stamp::of(p))),
                );
                state.failed = Some(attempted);
            }
        }
        state.current.clone()
    }
}
