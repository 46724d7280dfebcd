//! A worker program whose handlers end with what a careless handler may
//! produce and PostgreSQL cannot keep as it is: the tests of the job
//! queue's endings run it as a supervisor's worker.
//!
//! Kinds (all take `{}`):
//! - `nul_error`: fails with an error text that holds U+0000 (as
//!   `String::from_utf8_lossy` of a child's output may);
//! - `nul_result`: completes with a JSON result whose string holds U+0000;
//! - `deep_result`: completes with a result nested 200 arrays deep;
//! - `plain`: completes with `{"ok": true}`.
//!
//! Run: `procvisor supervise --worker target/debug/examples/odd_results`.

use procvisor::{JobContext, Worker};
use serde_json::{json, Value};

fn nul_error(_: Value, _: &JobContext) -> Result<Value, String> {
    Err("the tool said: bad\0output".into())
}

fn nul_result(_: Value, _: &JobContext) -> Result<Value, String> {
    Ok(json!({"out": "a\0b"}))
}

fn deep_result(_: Value, _: &JobContext) -> Result<Value, String> {
    let mut v = json!(1);
    for _ in 0..200 {
        v = Value::Array(vec![v]);
    }
    Ok(v)
}

fn plain(_: Value, _: &JobContext) -> Result<Value, String> {
    Ok(json!({"ok": true}))
}

fn main() {
    Worker::new()
        .handler("nul_error", nul_error)
        .handler("nul_result", nul_result)
        .handler("deep_result", deep_result)
        .handler("plain", plain)
        .main()
}
