//! Typed command-line values: clap parses durations and policy names once, so a command receives
//! seconds and enums, and a bad value is refused with the flag named before anything runs.

pub(crate) use prewarm_core::{Span, SpanOrZero};

/// The policies `simulate` replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PolicyName {
    /// This planner: forecasts, the calibrated distribution and the SLO sizer.
    Predictive,
    /// The seed's reactive headroom rules.
    Reactive,
    /// A fixed fleet sized for the trace's peak.
    Static,
    /// Reads the future: the lower bound no real policy reaches.
    Clairvoyant,
    /// The cheapest hourly counts within the SLO, chosen knowing the whole trace.
    Hindsight,
    /// On a token trace: this planner sized on request counts (a GPU serving the trace's mean
    /// work per request), as a request-counting autoscaler plans an LLM fleet.
    RequestsSized,
    /// The Kubernetes HPA (and KEDA) with a utilisation target (--hpa-target) and a scale-in
    /// window (--hpa-scale-in): what most fleets run today.
    Hpa,
    /// The cheapest HPA target and scale-in window that meets the SLO, chosen knowing the trace
    /// (a reference, like hindsight).
    TunedHpa,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prewarm_core::format_duration;

    #[test]
    fn durations_parse_into_seconds_and_print_back() {
        assert_eq!("10m".parse::<Span>(), Ok(Span(600)));
        assert!("0s".parse::<Span>().unwrap_err().contains("positive"));
        assert_eq!("0".parse::<SpanOrZero>(), Ok(SpanOrZero(0)));
        assert_eq!(Span(5_400).to_string(), format_duration(5_400));
    }
}
