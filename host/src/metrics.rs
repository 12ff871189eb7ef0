//! What operators can see inside: Prometheus metrics, kept cheap to update
//! on the request path; [`crate::admin`] serves them.

use std::time::Duration;

use http::StatusCode;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    /// `1xx` ... `5xx`.
    class: &'static str,
}

/// How a reload can end.
const RELOAD_OUTCOMES: [&str; 2] = ["ok", "rejected"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    hash: String,
    /// The WASI release of its handler: `0.2` or `0.3`.
    wasi: &'static str,
}

/// The log's count of dropped lines, read when scraped.
#[derive(Debug)]
struct LogDrops;

impl TypedMetric for LogDrops {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for LogDrops {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&crate::logging::dropped_lines(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Every metric the host keeps. Cheap to update on the request path: atomic
/// counters, and a short uncontended lock per histogram; nothing is hashed.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// One counter per status class, `1xx` to `5xx`, of the `requests`
    /// family: resolved once, so counting a request hashes nothing.
    requests: [Counter; 5],
    request_duration: Histogram,
    instantiation_duration: Histogram,
    in_flight: Gauge,
    waiting: Gauge,
    connections: Gauge,
    guest_tasks: Gauge,
    guest_traps: Counter,
    timeouts: Counter,
    rejected: Counter,
    client_limited: Counter,
    responses_cut: Counter,
    reloads: Family<ReloadLabels, Counter>,
    component: Family<ComponentLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics at zero, registered under `wasi_serve_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wasi_serve");
        let family = Family::<StatusLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by status class",
            family.clone(),
        );
        let requests = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .map(|class| family.get_or_create(&StatusLabels { class }).clone());
        // 50 µs to ~26 s.
        let request_duration = Histogram::new(exponential_buckets(50e-6, 2.0, 20));
        registry.register(
            "request_duration_seconds",
            "Arrival to response head",
            request_duration.clone(),
        );
        // 5 µs to ~1.3 s.
        let instantiation_duration = Histogram::new(exponential_buckets(5e-6, 2.0, 18));
        registry.register(
            "instantiation_duration_seconds",
            "Time to instantiate the component for one request",
            instantiation_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being handled",
            in_flight.clone(),
        );
        let waiting = Gauge::default();
        registry.register(
            "requests_waiting",
            "Requests waiting for an instance slot, or for one of their client's requests \
             to finish (--max-requests-per-client)",
            waiting.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Client connections open (at most --max-connections)",
            connections.clone(),
        );
        let guest_tasks = Gauge::default();
        registry.register(
            "guest_tasks",
            "Guests running on a task of their own: waiting, or sending a body after the response head",
            guest_tasks.clone(),
        );
        let guest_traps = Counter::default();
        registry.register("guest_traps", "Guest traps", guest_traps.clone());
        let timeouts = Counter::default();
        registry.register(
            "timeouts",
            "Requests interrupted at --request-timeout",
            timeouts.clone(),
        );
        let rejected = Counter::default();
        registry.register(
            "rejected",
            "Requests turned away with 503 (no instance slot)",
            rejected.clone(),
        );
        let client_limited = Counter::default();
        registry.register(
            "client_limited",
            "Requests turned away with 429: their client stayed at --max-requests-per-client",
            client_limited.clone(),
        );
        let responses_cut = Counter::default();
        registry.register(
            "responses_cut",
            "Responses cut off after their head was sent: the guest failed or timed out, \
             or the client went away or took nothing for --send-timeout",
            responses_cut.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines not written: the log queue was full (--log-queue-lines), or stderr refused them",
            LogDrops,
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("reloads", "Component reloads, by outcome", reloads.clone());
        // Every series exists from the start, at 0: a rate over it reads 0,
        // not "no data", before the first reload.
        for outcome in RELOAD_OUTCOMES {
            let _ = reloads.get_or_create(&ReloadLabels { outcome });
        }
        let component = Family::<ComponentLabels, Gauge>::default();
        registry.register(
            "component_info",
            "The component being served (1), by content hash and WASI release",
            component.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            instantiation_duration,
            in_flight,
            waiting,
            connections,
            guest_tasks,
            guest_traps,
            timeouts,
            rejected,
            client_limited,
            responses_cut,
            reloads,
            component,
        }
    }

    /// A request answered with `status` after `elapsed`.
    pub fn answered(&self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.requests[class].inc();
        self.request_duration.observe(elapsed.as_secs_f64());
    }

    /// One instantiation took `elapsed`.
    pub fn instantiated(&self, elapsed: Duration) {
        self.instantiation_duration.observe(elapsed.as_secs_f64());
    }

    /// A guest trapped.
    pub fn trapped(&self) {
        self.guest_traps.inc();
    }

    /// A guest was interrupted at the request timeout.
    pub fn timed_out(&self) {
        self.timeouts.inc();
    }

    /// A request got 503.
    pub fn rejected(&self) {
        self.rejected.inc();
    }

    /// A request got 429: its client was at its limit.
    pub fn client_limited(&self) {
        self.client_limited.inc();
    }

    /// A response was cut off after its head.
    pub fn response_cut(&self) {
        self.responses_cut.inc();
    }

    /// A reload ended with `outcome` (`ok` or `rejected`).
    pub fn reloaded(&self, outcome: &'static str) {
        self.reloads.get_or_create(&ReloadLabels { outcome }).inc();
    }

    /// The component with content hash `hash`, whose handler is WASI
    /// `wasi`, replaces the one served before (if any).
    pub fn serving(&self, hash: &str, wasi: &'static str) {
        self.component.clear();
        self.component
            .get_or_create(&ComponentLabels {
                hash: hash.into(),
                wasi,
            })
            .set(1);
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// How many requests are being handled now.
    pub fn requests_in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// The gauge of requests waiting, which admission keeps ([`Held`]).
    pub fn waiting(&self) -> &Gauge {
        &self.waiting
    }

    /// The gauge of connections open, which the accept loop keeps.
    pub fn connections(&self) -> &Gauge {
        &self.connections
    }

    /// How many requests are waiting now.
    pub fn requests_waiting(&self) -> i64 {
        self.waiting.get()
    }

    /// Counts a guest run on a task of its own until the guard is dropped.
    pub fn guest_task(&self) -> Held {
        Held::new(&self.guest_tasks)
    }

    /// How many guests are running on tasks of their own now.
    pub fn guest_tasks(&self) -> i64 {
        self.guest_tasks.get()
    }

    /// The metrics in the text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// One more in a gauge until dropped, wherever it goes: a guest run on its
/// own task ([`Metrics::guest_task`]), a request waiting for admission
/// ([`Metrics::waiting`]), a connection open ([`Metrics::connections`]).
pub struct Held(Gauge);

impl Held {
    /// Counts one more in `gauge`.
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A request in flight; see [`Metrics::in_flight`].
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
