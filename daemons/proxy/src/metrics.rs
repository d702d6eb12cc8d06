//! `/metrics` for Prometheus: the figures INFO shows, in the exposition
//! format, built from the live counters on each scrape.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Proxy;
use crate::table::table;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CmdLabel {
    cmd: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabel {
    cmd: String,
    quantile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    group: String,
    addr: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    reg.register(name, help, g);
}

/// The exposition text of every proxy metric.
pub fn render(px: &Proxy) -> String {
    let mut reg = Registry::with_prefix("kvfleet_proxy");
    let s = &px.stats;
    gauge(
        &mut reg,
        "connected_clients",
        "Client connections open",
        px.clients.lock().len() as i64,
    );
    gauge(
        &mut reg,
        "ops_per_sec",
        "Commands per second, mean of the last 1.6 s",
        s.ops_per_sec.load(Relaxed) as i64,
    );
    counter(
        &mut reg,
        "connections_received",
        "Client connections accepted",
        s.connections_received.load(Relaxed),
    );
    counter(
        &mut reg,
        "rejected_connections",
        "Clients refused over max_clients",
        s.rejected_connections.load(Relaxed),
    );
    counter(
        &mut reg,
        "backend_errors",
        "Backend connection failures",
        s.backend_errors.load(Relaxed),
    );
    counter(
        &mut reg,
        "net_input_bytes",
        "Bytes read from clients",
        s.net_in.load(Relaxed),
    );
    counter(
        &mut reg,
        "net_output_bytes",
        "Bytes written to clients",
        s.net_out.load(Relaxed),
    );

    let calls = Family::<CmdLabel, Counter>::default();
    let failed = Family::<CmdLabel, Counter>::default();
    let seconds = Family::<CmdLabel, FloatCounter>::default();
    let latency = Family::<QuantileLabel, FloatGauge>::default();
    let max = Family::<CmdLabel, FloatGauge>::default();
    for cmd in &table().cmds {
        let m = s.summary(cmd.index);
        if m.calls == 0 {
            continue;
        }
        let l = CmdLabel {
            cmd: cmd.spec.name.to_string(),
        };
        calls.get_or_create(&l).inc_by(m.calls);
        failed.get_or_create(&l).inc_by(m.errors);
        seconds.get_or_create(&l).inc_by(m.usec as f64 / 1e6);
        max.get_or_create(&l).set(m.max_us as f64 / 1e6);
        for (q, v) in ["0.5", "0.99", "0.999", "0.9999"].iter().zip(m.pct) {
            let ql = QuantileLabel {
                cmd: l.cmd.clone(),
                quantile: q.to_string(),
            };
            latency.get_or_create(&ql).set(v as f64 / 1e6);
        }
    }
    reg.register("commands", "Commands answered, by command", calls);
    reg.register("commands_failed", "Commands answered with an error", failed);
    reg.register(
        "command_duration_seconds",
        "Time from parse to reply, summed",
        seconds,
    );
    reg.register(
        "command_latency_seconds",
        "Latency quantiles from parse to reply (upper bounds, 12.5% resolution)",
        latency,
    );
    reg.register("command_latency_max_seconds", "Slowest reply", max);

    let r = px.routing.get();
    gauge(
        &mut reg,
        "topology_epoch",
        "Epoch of the topology in use",
        r.topo.epoch as i64,
    );
    let up = Family::<BackendLabel, Gauge>::default();
    let errs = Family::<BackendLabel, Counter>::default();
    for g in &r.groups {
        let l = BackendLabel {
            group: g.name.clone(),
            addr: g.master.addr.clone(),
        };
        up.get_or_create(&l)
            .set(g.master.state.connected.load(Relaxed));
        errs.get_or_create(&l)
            .inc_by(g.master.state.errors.load(Relaxed));
    }
    reg.register(
        "backend_connections",
        "Shared connections up, per group master",
        up,
    );
    reg.register(
        "backend_connection_failures",
        "Connection failures, per group master",
        errs,
    );

    let mut out = String::new();
    encode(&mut out, &reg).expect("writing to a String");
    out
}

/// Serves `GET /metrics` until the process ends.
pub async fn serve(px: Arc<Proxy>, listener: tokio::net::TcpListener) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let px = px.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    render(&px),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "metrics endpoint stopped");
    }
}
