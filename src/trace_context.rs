//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) on the way upstream: the
//! gateway is one hop of the trace. A valid incoming `traceparent` keeps its trace id and
//! flags, and the upstream gets the gateway's own span id as its parent (`tracestate` passed
//! on with it); a missing or malformed one is replaced by a new trace whose id is the request
//! id when that is 32 hex digits (so a log line's `request_id` finds the trace), and
//! `tracestate` is then dropped (it belongs to the trace it came with).

use http::{HeaderMap, HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// One hop's trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// The span that the next hop's work is a child of: 16 lowercase hex digits, not all zero.
    pub span_id: String,
    /// `01`: sampled.
    pub flags: u8,
}

impl TraceContext {
    /// The `traceparent` value (version `00`).
    /// `00-{trace_id}-{span_id}-{flags:02x}`, put together by hand: `format!` cost about
    /// 1,300 instructions per request.
    pub fn header(&self) -> String {
        let mut s = String::with_capacity(8 + self.trace_id.len() + self.span_id.len());
        s.push_str("00-");
        s.push_str(&self.trace_id);
        s.push('-');
        s.push_str(&self.span_id);
        s.push('-');
        crate::request_id::push_hex(&mut s, &[self.flags]);
        s
    }
}

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'0')
}

/// A `traceparent` value as the spec reads it: version `00` exactly as long as it must be; a
/// later version (not `ff`) may carry more after a `-`, which is ignored.
pub fn parse(v: &str) -> Option<TraceContext> {
    let version = v.get(0..2)?;
    if !version
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        || version == "ff"
    {
        return None;
    }
    if version == "00" && v.len() != 55 {
        return None;
    }
    if v.len() > 55 && v.as_bytes().get(55) != Some(&b'-') {
        return None;
    }
    let mut parts = v.get(..55)?.split('-');
    let (_, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if !lower_hex(trace_id, 32) || !lower_hex(span_id, 16) || flags.len() != 2 {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(TraceContext {
        trace_id: trace_id.to_string(),
        span_id: span_id.to_string(),
        flags,
    })
}

/// A new span id.
pub fn new_span_id() -> String {
    let mut b = [0u8; 8];
    loop {
        rand::fill(&mut b);
        if b != [0; 8] {
            return crate::request_id::hex(&b);
        }
    }
}

/// The trace this request belongs to: the incoming one (one valid `traceparent`), or a new
/// one whose id is `request_id` when that can be a trace id. Its `span_id` is still the
/// caller's (incoming) span, or none for a new trace; see [`forward`].
pub fn incoming(headers: &HeaderMap, request_id: &str) -> (Option<TraceContext>, String) {
    let mut all = headers.get_all(&TRACEPARENT).iter();
    let parent = match (all.next(), all.next()) {
        (Some(v), None) => v.to_str().ok().and_then(parse),
        _ => None,
    };
    let trace_id = match &parent {
        Some(p) => p.trace_id.clone(),
        None if lower_hex(request_id, 32) => request_id.to_string(),
        None => crate::request_id::generate(),
    };
    (parent, trace_id)
}

/// Set the upstream's trace context on `headers`: `trace_id`, the gateway's span `span_id`,
/// the parent's flags (a new trace: `sampled` as given). `tracestate` goes on only with the
/// trace it came with.
pub fn forward(
    headers: &mut HeaderMap,
    parent: Option<&TraceContext>,
    trace_id: String,
    span_id: String,
    sampled: bool,
) -> TraceContext {
    let ctx = TraceContext {
        trace_id,
        span_id,
        flags: parent.map_or(u8::from(sampled), |p| p.flags),
    };
    if parent.is_none() {
        headers.remove(TRACESTATE);
    }
    match HeaderValue::from_str(&ctx.header()) {
        Ok(v) => {
            headers.insert(TRACEPARENT, v);
        }
        Err(_) => {
            headers.remove(TRACEPARENT);
        }
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specs_example_parses() {
        let c = parse(VALID).unwrap();
        assert_eq!(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.span_id, "00f067aa0ba902b7");
        assert_eq!(c.flags, 1);
        assert_eq!(c.header(), VALID);
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        // A later version may carry more fields.
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
    }

    #[test]
    fn a_valid_parent_keeps_its_trace_and_gets_a_new_span() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        h.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
        let (parent, trace) = incoming(&h, "rid");
        let sent = forward(&mut h, parent.as_ref(), trace, new_span_id(), false);
        assert_eq!(sent.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(sent.span_id, "00f067aa0ba902b7");
        assert_eq!(sent.flags, 1);
        assert_eq!(h.get(TRACEPARENT).unwrap(), sent.header().as_str());
        assert_eq!(h.get(TRACESTATE).unwrap(), "vendor=1");
    }

    #[test]
    fn no_or_a_bad_parent_starts_a_trace_named_by_the_request_id() {
        let rid = crate::request_id::generate();
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static("garbage"));
        h.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
        let (parent, trace) = incoming(&h, &rid);
        assert!(parent.is_none());
        let sent = forward(&mut h, None, trace, new_span_id(), false);
        assert_eq!(sent.trace_id, rid);
        assert_eq!(sent.flags, 0);
        assert!(parse(h.get(TRACEPARENT).unwrap().to_str().unwrap()).is_some());
        assert!(h.get(TRACESTATE).is_none());
        // An id from a proxy that is no trace id: a random trace.
        let (_, trace) = incoming(&HeaderMap::new(), "lb-1");
        assert!(lower_hex(&trace, 32));
    }
}
