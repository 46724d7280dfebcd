//! Whatever bytes a worker writes on its results pipe, the supervisor's
//! reader neither panics, nor aborts, nor reserves memory for more than the
//! frame limit (run with `-malloc_limit_mb`), and delivers at most the
//! reports of the jobs it was waiting for.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// A small limit, so that frames over it are within the fuzzer's reach.
const MAX_FRAME: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let got = procvisor::fuzzing::read_worker_bytes(data, MAX_FRAME);
    assert!(got.delivered <= 8, "{got:?}");
    assert!(got.messages <= data.len(), "{got:?}");
});
