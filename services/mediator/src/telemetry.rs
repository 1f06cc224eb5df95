//! Trace context across instances: the W3C `traceparent` of the current span, to put into a
//! cross-instance notice, and the continuation of that trace on the instance that delivers.
//!
//! With no OpenTelemetry layer installed (the default: no exporter configured) spans carry no
//! trace context; then nothing is sent and nothing is continued.
//!
//! [`Telemetry::install`] sets up the process: logs (text or JSON), OTLP/HTTP export of spans
//! and metrics, and the registry behind the Prometheus scrape endpoint.

use std::collections::HashMap;

use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The current span's `traceparent`, if it belongs to a trace.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the trace `traceparent` names (a malformed one is ignored).
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Whether spans are exported (an OpenTelemetry layer was made): until one is, the per-request,
/// per-message and per-store-call spans are not built at all ([`hot_span!`](crate::hot_span)).
static SPANS_EXPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True once an OpenTelemetry layer exists in this process.
pub fn spans_exported() -> bool {
    SPANS_EXPORTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// An `info` span on a hot path (each request, message, store call): built only when spans are
/// exported, [`tracing::Span::none`] otherwise. Log lines then carry their own fields, not the
/// span's; nothing is allocated per message for spans nobody records.
#[macro_export]
macro_rules! hot_span {
    ($($arg:tt)*) => {
        if $crate::telemetry::spans_exported() {
            tracing::info_span!($($arg)*)
        } else {
            tracing::Span::none()
        }
    };
}

/// A tracing layer that records spans as OpenTelemetry spans with `provider` (tests, and the
/// exporter setup of the binary). Making one turns the hot-path spans on.
pub fn layer<S>(
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    SPANS_EXPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing_opentelemetry::layer().with_tracer(provider.tracer("mediator"))
}

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An OTLP exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Otlp(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The Prometheus exporter could not be built.
    #[error("Prometheus exporter: {0}")]
    Prometheus(String),
    /// The log filter does not parse.
    #[error("log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// A global subscriber is already installed.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// What the process exports: installed once, by the binary, before the mediator is built (the
/// mediator's instruments come from the global meter provider set here).
#[derive(Debug)]
pub struct Telemetry {
    tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    meter: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    registry: Option<prometheus::Registry>,
}

impl Telemetry {
    /// Installs logging (text or JSON, `log.filter` unless `MEDIATOR_LOG` is set), the OTLP span
    /// and metric exporters (when `telemetry.otlp.endpoint` is set) and the Prometheus registry
    /// (when `telemetry.prometheus.listen` is set). `cluster.instance_id` (set: see
    /// [`crate::config::ClusterConfig::ensure_instance_id`]) is the `service.instance.id` of
    /// everything exported.
    pub fn install(config: &crate::Config, json_logs: bool) -> Result<Self, TelemetryError> {
        use opentelemetry_otlp::WithExportConfig;
        use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};

        let settings = &config.telemetry;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.instance.id",
                config.cluster.instance_id.clone(),
            ))
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let protocol = match settings.otlp.protocol {
            crate::config::OtlpProtocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
            crate::config::OtlpProtocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        };
        let base = settings.otlp.endpoint.trim_end_matches('/');
        let timeout = std::time::Duration::from_millis(settings.otlp.timeout_ms);

        let tracer = if settings.otlp_enabled() {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .with_endpoint(format!("{base}/v1/traces"))
                .with_timeout(timeout)
                .build()?;
            let batch = opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_scheduled_delay(std::time::Duration::from_millis(
                    settings.otlp.traces_delay_ms,
                ))
                .build();
            let processor = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build();
            Some(
                opentelemetry_sdk::trace::SdkTracerProvider::builder()
                    .with_resource(resource.clone())
                    .with_span_processor(processor)
                    .build(),
            )
        } else {
            None
        };

        let registry = settings
            .prometheus
            .address()
            .map(|_| prometheus::Registry::new());
        let meter = if settings.otlp_enabled() || registry.is_some() {
            let mut builder =
                opentelemetry_sdk::metrics::SdkMeterProvider::builder().with_resource(resource);
            if settings.otlp_enabled() {
                let exporter = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_protocol(protocol)
                    .with_endpoint(format!("{base}/v1/metrics"))
                    .with_timeout(timeout)
                    .build()?;
                builder = builder.with_reader(
                    opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                        .with_interval(std::time::Duration::from_millis(
                            settings.otlp.metrics_interval_ms,
                        ))
                        .build(),
                );
            }
            if let Some(registry) = &registry {
                let exporter = opentelemetry_prometheus::exporter()
                    .with_registry(registry.clone())
                    .without_scope_info()
                    .build()
                    .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
                builder = builder.with_reader(exporter);
            }
            let provider = builder.build();
            opentelemetry::global::set_meter_provider(provider.clone());
            Some(provider)
        } else {
            None
        };

        let filter = match std::env::var("MEDIATOR_LOG") {
            Ok(spec) => tracing_subscriber::EnvFilter::try_new(spec),
            Err(_) => tracing_subscriber::EnvFilter::try_new(&config.log.filter),
        }?;
        let logs = match (config.log.format, json_logs) {
            (crate::config::LogFormat::Json, _) | (_, true) => {
                tracing_subscriber::fmt::layer().json().boxed()
            }
            (crate::config::LogFormat::Text, false) => tracing_subscriber::fmt::layer().boxed(),
        }
        .with_filter(filter);
        // Spans of this crate only, whatever the log filter says: the exporter's own HTTP client
        // must not trace itself.
        let spans = tracer.as_ref().map(|provider| {
            layer(provider).with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("mediator", tracing::Level::INFO),
            )
        });
        tracing_subscriber::registry()
            .with(logs)
            .with(spans)
            .try_init()?;
        Ok(Self {
            tracer,
            meter,
            registry,
        })
    }

    /// Serves `GET /metrics` (Prometheus text format) on `listener` until the task is dropped;
    /// `None` when no Prometheus endpoint is configured.
    pub fn metrics_endpoint(
        &self,
        listener: tokio::net::TcpListener,
    ) -> Option<impl std::future::Future<Output = std::io::Result<()>> + Send + 'static> {
        let registry = self.registry.clone()?;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move { render(&registry) }
            }),
        );
        Some(async move { axum::serve(listener, app).await })
    }

    /// Exports what is still batched and stops the exporters (blocking: call it off the async
    /// runtime's workers, e.g. with `spawn_blocking`).
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer {
            if let Err(err) = tracer.shutdown() {
                eprintln!("span exporter shutdown: {err}");
            }
        }
        if let Some(meter) = self.meter {
            if let Err(err) = meter.shutdown() {
                eprintln!("metric exporter shutdown: {err}");
            }
        }
    }
}

/// The registry's metrics in the Prometheus text format.
fn render(registry: &prometheus::Registry) -> axum::response::Response {
    use axum::response::IntoResponse;
    use prometheus::Encoder;

    let encoder = prometheus::TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                encoder.format_type().to_owned(),
            )],
            body,
        )
            .into_response(),
        Err(err) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics could not be encoded: {err}\n"),
        )
            .into_response(),
    }
}
