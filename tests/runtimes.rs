//! The same handle works from a tokio application, an actix one, and plain
//! threads.

mod common;

use common::*;
use procvisor::{Job, Outcome};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_tokio() {
    let sup = tokio::task::spawn_blocking(|| start(config(1)))
        .await
        .unwrap();
    let handles: Vec<_> = (0..20)
        .map(|i| sup.submit(Job::json("echo", &json!(i))).unwrap())
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.outcome, Outcome::Completed(json!(i)));
    }
    let snap = sup.snapshot().await.unwrap();
    assert_eq!(snap.counts.completed, 20);
    sup.shutdown(std::time::Duration::from_secs(1)).await;
}

#[test]
fn from_actix() {
    let sup = start(config(1));
    let sys = actix_rt::System::new();
    let out = sys.block_on(async move {
        let h = sup.submit(Job::json("echo", &json!("actix"))).unwrap();
        let r = h.await;
        sup.shutdown(std::time::Duration::from_secs(1)).await;
        r
    });
    assert_eq!(out.outcome, Outcome::Completed(json!("actix")));
}

#[test]
fn from_many_threads_at_once() {
    let sup = start(config(2));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let sup = sup.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let r = sup
                        .submit(Job::json("echo", &json!([t, i])))
                        .unwrap()
                        .wait();
                    assert_eq!(r.outcome, Outcome::Completed(json!([t, i])));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(sup.snapshot_blocking().unwrap().counts.completed, 200);
}
