//! Runs the seed 000 ingest once, for profilers (`perf`, `valgrind --tool=callgrind`):
//! `cargo run --release -p reckon-core --example ingest_profile -- 200000`.

use reckon_core::{
    AggKind, AggregateSpec, BatchReport, PartitionId, Pipeline, PipelineSpec, Span, WindowSpec,
};
use reckon_workload::Seed000;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let arrivals: Vec<_> = Seed000::with_late_fraction(0.1)
        .arrivals()
        .take(n)
        .collect();
    let spec = PipelineSpec::builder("water_level_mean_1h")
        .window(WindowSpec::tumbling(Span::hours(1)))
        .aggregate(AggregateSpec::new(AggKind::Mean, "level"))
        .aggregate(AggregateSpec::count())
        .build()
        .expect("spec");
    let started = std::time::Instant::now();
    let mut p = Pipeline::new(spec).expect("pipeline");
    let (mut out, mut report, mut emitted) = (Vec::new(), BatchReport::default(), 0);
    for batch in arrivals.chunk_by(|a, b| a.at == b.at) {
        p.advance(batch[0].at, &mut out);
        p.ingest_batch(PartitionId(0), batch, &mut report, &mut out);
        emitted += out.len();
        out.clear();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{n} events, {emitted} emissions, {:.1} M events/s",
        n as f64 / secs / 1e6
    );
}
