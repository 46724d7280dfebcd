//! The scheduling core under a million queued jobs: push + pop throughput for
//! each selection policy, and memory per queued job.
//!
//! `cargo bench --bench sched` (criterion). Each iteration submits one job
//! and takes one out through the whole core (dispatch to a worker slot, then
//! finished), with 1,000,000 jobs queued, so the queue stays that size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use procvisor::sched::{
    weight_units, Core, CoreConfig, Decision, EvictionMode, Finish, JobSpec, Policy, Queue,
};
use rand::rngs::SmallRng;
use rand::SeedableRng;

/// Counts live heap bytes, to measure memory per queued job.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const QUEUED: u64 = 1_000_000;
const KINDS: u32 = 4;

fn spec(i: u64) -> JobSpec {
    JobSpec {
        weight: weight_units(1.0 + (i % 10) as f64).unwrap(),
        ..JobSpec::new((i % KINDS as u64) as u32, (i % 11) as u8)
    }
}

/// A core with one ready slot and a million queued jobs.
fn loaded(policy: Policy) -> (Core<()>, u64) {
    let mut core = Core::new(CoreConfig {
        slots: 1,
        policy,
        eviction: EvictionMode::Off,
        seed: 1,
        ..CoreConfig::default()
    });
    core.worker_ready(0);
    for i in 1..=QUEUED {
        core.submit(i, spec(i), ()).unwrap();
    }
    (core, QUEUED + 1)
}

fn policies() -> [(&'static str, Policy); 4] {
    [
        ("priority", Policy::Priority),
        ("weighted_random", Policy::WeightedRandom),
        ("uniform", Policy::Uniform),
        ("priority_weighted", Policy::PriorityWeighted),
    ]
}

fn memory_report() {
    for (name, policy) in policies() {
        let before = LIVE.load(Ordering::Relaxed);
        let (core, _) = loaded(policy);
        let bytes = LIVE.load(Ordering::Relaxed) - before;
        println!(
            "memory: {name}: {:.1} bytes per queued job ({} jobs, {:.1} MiB)",
            bytes as f64 / QUEUED as f64,
            QUEUED,
            bytes as f64 / (1 << 20) as f64
        );
        drop(core);
    }
}

fn push_pop(c: &mut Criterion) {
    memory_report();
    let mut group = c.benchmark_group("core push+pop, 1M queued");
    // Two operations per iteration: one push, one pop.
    group.throughput(Throughput::Elements(2));
    for (name, policy) in policies() {
        let (mut core, mut next) = loaded(policy);
        let now = Instant::now();
        let mut out: Vec<Decision<(), ()>> = Vec::with_capacity(4);
        group.bench_function(name, |b| {
            b.iter(|| {
                core.submit(next, spec(next), ()).unwrap();
                next += 1;
                out.clear();
                core.poll(now, &mut out);
                // The poll also hands back the previous job's end.
                let Some(job) = out.iter().find_map(|d| match d {
                    Decision::Dispatch { job, .. } => Some(*job),
                    _ => None,
                }) else {
                    panic!("nothing dispatched")
                };
                let _ = black_box(core.finished(0, job, Finish::Completed, None, now));
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("queue push+pop, 1M queued");
    group.throughput(Throughput::Elements(2));
    for (name, policy) in policies() {
        let mut q = Queue::new(policy);
        for i in 1..=QUEUED {
            let s = spec(i);
            q.push(i, s.kind, s.priority, s.weight);
        }
        let mut rng = SmallRng::seed_from_u64(3);
        let mut next = QUEUED + 1;
        group.bench_function(name, |b| {
            b.iter(|| {
                let s = spec(next);
                q.push(next, s.kind, s.priority, s.weight);
                next += 1;
                black_box(q.pop(&|_| true, &mut rng));
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = push_pop
}
criterion_main!(benches);
