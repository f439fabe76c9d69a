//! W3C Trace Context (`traceparent`) for a message that crosses a process boundary: a
//! client's request into the gateway, a hop through the cluster inbox to another node.
//!
//! With the OpenTelemetry layer installed (the binary's `[telemetry] otlp_endpoint`) the
//! spans of a turn join the trace its `traceparent` names and are exported, so one trace
//! covers a message across nodes. Without it, the header still carries one trace id, which
//! the logs of every node it passes show.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (HTTP and NATS) that carries a [`TraceParent`].
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A parsed W3C `traceparent`: which trace a message belongs to and its parent span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a header value; `None` when it is not a valid W3C `traceparent` (then the
    /// spec says to start a new trace).
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let mut parts = header.split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four parts; a later version may append more.
        let well_formed = is_lower_hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.next().is_none())
            && is_lower_hex(trace_id, 32)
            && is_lower_hex(span_id, 16)
            && is_lower_hex(flags, 2);
        if !well_formed {
            return None;
        }
        let trace_id = TraceId::from_hex(trace_id).ok()?;
        let span_id = SpanId::from_hex(span_id).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != TraceId::INVALID && span_id != SpanId::INVALID).then_some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace with a random root, not sampled: nothing recorded its root span (this
    /// is for a hop whose node exports no spans), so by the W3C rules the flag stays off.
    /// A sampled flag would also make every NATS server on the way parse the message's
    /// headers into a map to look for its own message tracing.
    pub fn random() -> Self {
        loop {
            let trace_id = TraceId::from(rand::random::<u128>());
            let span_id = SpanId::from(rand::random::<u64>());
            if trace_id != TraceId::INVALID && span_id != SpanId::INVALID {
                return Self {
                    trace_id,
                    span_id,
                    sampled: false,
                };
            }
        }
    }

    /// The context of `span` as exported to OpenTelemetry; `None` when no OpenTelemetry
    /// layer records it (telemetry export is off, or the span is disabled).
    pub fn of_span(span: &tracing::Span) -> Option<Self> {
        let context = span.context();
        let span_context = context.span().span_context().clone();
        span_context.is_valid().then(|| Self {
            trace_id: span_context.trace_id(),
            span_id: span_context.span_id(),
            sampled: span_context.is_sampled(),
        })
    }

    /// Makes `span` (not entered yet) a child of this remote parent. Without an
    /// OpenTelemetry layer this does nothing, which is what it should do.
    pub fn adopt(self, span: &tracing::Span) {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(
            self.trace_id,
            self.span_id,
            flags,
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }

    /// The header value (version 00).
    pub fn to_header(self) -> String {
        use std::fmt::Write as _;
        let mut header = String::with_capacity(55);
        let _ = write!(
            header,
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        );
        header
    }

    /// The trace id as 32 lowercase hex digits, as logs show it.
    pub fn trace_id_hex(self) -> String {
        self.trace_id.to_string()
    }
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_spec_example_round_trips() {
        let parent = TraceParent::parse(EXAMPLE).expect("valid");
        assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(parent.sampled);
        assert_eq!(parent.to_header(), EXAMPLE);
        let unsampled = TraceParent::parse(&EXAMPLE.replace("-01", "-00")).expect("valid");
        assert!(!unsampled.sampled);
    }

    #[test]
    fn invalid_headers_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let header = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert!(TraceParent::parse(header).is_some());
    }

    #[test]
    fn random_parents_are_valid_and_distinct() {
        let (first, second) = (TraceParent::random(), TraceParent::random());
        assert_ne!(first.trace_id, second.trace_id);
        assert!(!first.sampled, "nothing recorded a random root");
        assert!(first.to_header().ends_with("-00"));
        assert_eq!(TraceParent::parse(&first.to_header()), Some(first));
    }

    #[test]
    fn without_an_opentelemetry_layer_a_span_has_no_context() {
        let span = tracing::info_span!("untraced");
        assert_eq!(TraceParent::of_span(&span), None);
        TraceParent::random().adopt(&span);
    }

    #[test]
    fn with_an_opentelemetry_layer_spans_join_the_remote_trace() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;

        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let remote = TraceParent::parse(EXAMPLE).expect("valid");
        let onward = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("hop");
            remote.adopt(&span);
            let onward = TraceParent::of_span(&span).expect("a recorded span has a context");
            let _child = tracing::info_span!(parent: &span, "child");
            onward
        });
        assert_eq!(onward.trace_id, remote.trace_id);
        assert_ne!(onward.span_id, remote.span_id);
        let spans = exporter.get_finished_spans().expect("spans");
        let hop = spans
            .iter()
            .find(|span| span.name == "hop")
            .expect("hop exported");
        assert_eq!(hop.span_context.trace_id(), remote.trace_id);
        assert_eq!(hop.parent_span_id, remote.span_id);
        let child = spans
            .iter()
            .find(|span| span.name == "child")
            .expect("child exported");
        assert_eq!(child.span_context.trace_id(), remote.trace_id);
        assert_eq!(child.parent_span_id, onward.span_id);
    }
}
