//! The log's level, changed while the node runs (`PUT /api/v1/ops/log-level`, `troupe ops
//! log-level`): the log's filter is reloadable, and [`LogLevel`] is the one owner of what
//! it is now. It starts from `RUST_LOG` (default `info`); a level (`debug`) or filter
//! directives (`info,troupe_actors=debug`) replace it until the next change or restart.

use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::{EnvFilter, Registry, reload};

/// The longest filter taken: directives are short, and this one is kept in memory.
const MAX_DIRECTIVES_BYTES: usize = 1024;

/// Why the log's level was not changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogLevelError {
    #[error(
        "`{directives}` is not a log level or filter (such as `info` or `info,troupe_actors=debug`): {source}"
    )]
    Invalid {
        directives: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a log filter is at most {MAX_DIRECTIVES_BYTES} bytes")]
    TooLong,
    #[error("the log filter is empty: give a level such as `info`")]
    Empty,
    #[error("the log's filter cannot be changed: {0}")]
    Unavailable(#[source] reload::Error),
}

/// The log's filter, and what it was set to.
#[derive(Clone)]
pub(crate) struct LogLevel {
    handle: reload::Handle<EnvFilter, Registry>,
    current: Arc<Mutex<String>>,
}

/// The filter directives `text` gives, checked.
fn parse(text: &str) -> Result<EnvFilter, LogLevelError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(LogLevelError::Empty);
    }
    if text.len() > MAX_DIRECTIVES_BYTES {
        return Err(LogLevelError::TooLong);
    }
    EnvFilter::try_new(text).map_err(|source| LogLevelError::Invalid {
        directives: text.to_owned(),
        source,
    })
}

impl LogLevel {
    /// The log's level from `RUST_LOG` (`info` when it is unset or not a filter), and the
    /// filter to install in the log layer.
    pub(crate) fn from_env() -> (Self, reload::Layer<EnvFilter, Registry>) {
        let wanted = std::env::var("RUST_LOG").unwrap_or_default();
        let (directives, filter) = match parse(&wanted) {
            Ok(filter) => (wanted.trim().to_owned(), filter),
            Err(_) => ("info".to_owned(), EnvFilter::new("info")),
        };
        let (layer, handle) = reload::Layer::new(filter);
        let level = Self {
            handle,
            current: Arc::new(Mutex::new(directives)),
        };
        (level, layer)
    }

    /// What the log's filter is now.
    pub(crate) fn current(&self) -> String {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `directives` the log's filter.
    pub(crate) fn set(&self, directives: &str) -> Result<(), LogLevelError> {
        let filter = parse(directives)?;
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        self.handle
            .reload(filter)
            .map_err(LogLevelError::Unavailable)?;
        directives.trim().clone_into(&mut current);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Counts the events its filter lets through.
    struct Counting(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> Layer<S> for Counting {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _context: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0
                .lock()
                .unwrap()
                .push(event.metadata().level().to_string());
        }
    }

    #[test]
    fn a_new_level_takes_effect_at_once_and_a_bad_one_changes_nothing() {
        let (level, filter) = LogLevel::from_env();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber =
            tracing_subscriber::registry().with(Counting(Arc::clone(&seen)).with_filter(filter));
        tracing::subscriber::with_default(subscriber, || {
            level.set("info").unwrap();
            tracing::debug!("hidden");
            tracing::info!("shown");
            level.set(" debug ").unwrap();
            assert_eq!(level.current(), "debug");
            tracing::debug!("shown now");
            for bad in ["", "   ", "info,=nonsense[", &"x".repeat(2000)] {
                assert!(level.set(bad).is_err(), "{bad:?}");
            }
            assert_eq!(level.current(), "debug", "a refused filter changes nothing");
            tracing::debug!("still shown");
        });
        assert_eq!(*seen.lock().unwrap(), ["INFO", "DEBUG", "DEBUG"]);
    }
}
