//! Logging set-up: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`), as text or as one JSON object per line
//! ([`crate::settings::LogFormat`]).
//!
//! Text is coloured only when stderr is a terminal, so files and log
//! collectors never see escape codes. Events are single lines in both
//! formats: errors are logged with their cause chain on one line
//! (`{:#}`), never with a backtrace.

use std::io::IsTerminal as _;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::settings::LogFormat;

/// Installs the global text subscriber; later calls are no-ops (tests call it freely).
pub fn init() {
    init_with(LogFormat::default());
}

/// Installs the global subscriber writing `format` to stderr; later calls are no-ops.
pub fn init_with(format: LogFormat) {
    let ansi = std::io::stderr().is_terminal();
    let _ = subscriber(format, ansi, std::io::stderr).try_init();
}

/// A subscriber writing `format` to `writer`, filtered by `RUST_LOG`, coloured when `ansi`.
pub fn subscriber<W>(format: LogFormat, ansi: bool, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

#[cfg(test)]
pub(crate) mod capture {
    //! A writer that keeps what is logged, for tests of log lines.

    use std::io::Write;
    use std::sync::{Arc, Mutex, PoisonError};

    use tracing_subscriber::fmt::MakeWriter;

    /// Everything written so far, shared by its clones.
    #[derive(Clone, Default)]
    pub struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// The text written so far.
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
                .into_owned()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Self;

        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::capture::Captured;
    use super::*;

    #[test]
    fn json_logs_are_one_parseable_object_per_line() {
        let captured = Captured::default();
        let subscriber = subscriber(LogFormat::Json, false, captured.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", app.appid = "wx1");
            let _entered = span.enter();
            tracing::warn!(wechat.errcode = 45009, "quota reached\nfor today");
            tracing::error!(error = "a: b", "request failed");
        });
        let text = captured.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["level"], "WARN");
        assert_eq!(first["message"], "quota reached\nfor today");
        assert_eq!(first["wechat.errcode"], 45009);
        assert_eq!(first["span"]["app.appid"], "wx1");
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["error"], "a: b");
    }

    #[test]
    fn text_logs_carry_no_colour_codes_unless_asked() {
        for ansi in [false, true] {
            let captured = Captured::default();
            tracing::subscriber::with_default(
                subscriber(LogFormat::Text, ansi, captured.clone()),
                || {
                    tracing::info!("plain");
                },
            );
            assert_eq!(
                captured.text().contains('\u{1b}'),
                ansi,
                "{}",
                captured.text()
            );
        }
    }
}
